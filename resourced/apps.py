from django.apps import AppConfig


class ResourcedConfig(AppConfig):
    name = "resourced"
    verbose_name = "resourced"
    default_auto_field = "django.db.models.BigAutoField"
