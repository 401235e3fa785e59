"""Reads of the image bed, from the Image table."""

from django.db.models import Q, QuerySet

from imgbed.errors import ImageNotFound
from imgbed.models import Image
from imgbed.paths import clean_filename, clean_path, image_key


def image_get(*, path: str, filename: str) -> Image:
    """The Image at <path>/<filename>; ImagePathInvalid for a bad one, ImageNotFound when absent."""
    path = clean_path(path)
    filename = clean_filename(filename)
    image = Image.objects.filter(path=path, filename=filename).first()
    if image is None:
        raise ImageNotFound(f"{image_key(path, filename)}: no such image")
    return image


def image_list(*, path: str, recursive: bool = False) -> QuerySet[Image]:
    """Images directly under path, or anywhere below it when recursive, by path then name."""
    path = clean_path(path)
    condition = Q(path=path)
    if recursive:
        condition |= Q(path__startswith=path + "/")
    return Image.objects.filter(condition).order_by("path", "filename")
