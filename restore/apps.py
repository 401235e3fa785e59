from django.apps import AppConfig


class RestoreConfig(AppConfig):
    name = "restore"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # the app's queues and routes, dashboard panel, metrics and 404 shape, registered with resourced/
        from resourced.dashboard import register_panel
        from resourced.errors import register_error_family
        from resourced.metrics import register_database_metrics
        from restore import queues  # noqa: F401
        from restore.apis import RESTORE_ERRORS
        from restore.dashboard import restore_panel
        from restore.metrics import restore_families

        register_panel("restore", restore_panel)
        register_database_metrics("restore", restore_families)
        # its own prefixes before the image bed's root, which holds GET <path>/<name> (imgbed/apps.py)
        register_error_family(("/resource/v1/i/restore", "/resource/v1/i/PutRestoreResult"), RESTORE_ERRORS)
