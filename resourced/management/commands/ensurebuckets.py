from django.conf import settings
from django.core.management.base import BaseCommand

from resourced.s3 import ensure_buckets


class Command(BaseCommand):
    help = "Create the service's buckets on the configured S3 endpoint when they are missing."

    def handle(self, *args, **options):
        names = list(
            dict.fromkeys(
                [settings.SOURCE_DEFAULT_BUCKET, settings.EXPORT_DEFAULT_BUCKET, settings.IMGBED_BUCKET]
                + list(settings.S3_CREATE_BUCKETS)
            )
        )
        ensure_buckets(names)
        self.stdout.write("buckets: " + ", ".join(names))
