from django.db import models


class Image(models.Model):
    """One image in the image bed, stored at ``<path>/<filename>`` in IMGBED_BUCKET.

    The row is the index the image bed serves and lists from: a GET answers ETag and Last-Modified
    (and 304s) from it without asking the object store.
    """

    path = models.CharField(max_length=1024, help_text="relative, '/'-separated, no leading slash")
    filename = models.CharField(max_length=255)
    size = models.PositiveBigIntegerField(help_text="bytes")
    content_type = models.CharField(max_length=32)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64, help_text="of the stored bytes; the HTTP ETag")
    uploader = models.CharField(max_length=255, blank=True, help_text="userid of the session that stored it")
    owner = models.CharField(max_length=255, blank=True, db_index=True,
                             help_text="the user it belongs to (an export's thumbnail: the export's user); only "
                                       "that user replaces or deletes it; empty for images stored before owners")
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True, help_text="last time the bytes were stored; Last-Modified")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["path", "filename"], name="imgbed_image_path_filename")]
        ordering = ["path", "filename"]
        indexes = [models.Index(fields=["-created"], name="imgbed_image_created")]

    def __str__(self) -> str:
        return self.key

    @property
    def key(self) -> str:
        return f"{self.path}/{self.filename}"

    @property
    def etag(self) -> str:
        return f'"{self.sha256}"'
