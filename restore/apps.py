from django.apps import AppConfig


class RestoreConfig(AppConfig):
    name = "restore"
    default_auto_field = "django.db.models.BigAutoField"
