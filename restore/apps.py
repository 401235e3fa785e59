from django.apps import AppConfig


class RestoreConfig(AppConfig):
    name = "restore"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # the app's queues and routes, dashboard panel and metrics, registered with resourced/
        from resourced.dashboard import register_panel
        from resourced.metrics import register_database_metrics
        from restore import queues  # noqa: F401
        from restore.dashboard import restore_panel
        from restore.metrics import restore_families

        register_panel("restore", restore_panel)
        register_database_metrics("restore", restore_families)
