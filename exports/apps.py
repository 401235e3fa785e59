from django.apps import AppConfig


class ExportsConfig(AppConfig):
    name = "exports"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # the app's queues and routes, its dashboard panel, metrics and 404 shape, registered with
        # the shared parts in resourced/ (which import no app)
        from exports import queues  # noqa: F401
        from exports.apis import EXPORT_ERRORS
        from exports.dashboard import export_panel
        from exports.metrics import export_families
        from resourced.dashboard import register_panel
        from resourced.errors import register_error_family
        from resourced.metrics import register_database_metrics

        register_panel("exports", export_panel)
        register_database_metrics("exports", export_families)
        register_error_family(("/resource/v1/i/export-to-s3dir", "/export-to-s3dir", "/resource/v1/i/getthumbnail"),
                              EXPORT_ERRORS)
