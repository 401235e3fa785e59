from django.apps import AppConfig


class ImgbedConfig(AppConfig):
    name = "imgbed"
    default_auto_field = "django.db.models.BigAutoField"
