from django.apps import AppConfig


class ImgbedConfig(AppConfig):
    name = "imgbed"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # The image route serves GET and HEAD on <IMGBED_URL_PREFIX><path>/<filename> (docs/api.md
        # §2): such a URL that matches no route (a file name that is not an image name) answers
        # the image bed's 404, ErrorCode 4, as an absent image does. Every other unknown URL keeps
        # its own shape: other methods, URLs without a path, and the APIs' own prefixes, longer.
        from django.conf import settings

        from imgbed.errors import IMGBED_ERRORS
        from imgbed.paths import url_path_prefix
        from resourced.errors import register_error_family

        register_error_family((url_path_prefix(settings.IMGBED_URL_PREFIX),), IMGBED_ERRORS,
                              methods=("GET", "HEAD"), below=True)
