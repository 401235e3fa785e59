"""Writes of the image bed: store (upload, image_save_bytes) and delete.

Every write validates the path and the name first, then the size, then the content, and only then
touches the object store and the Image row: a refused image leaves nothing behind.
"""

import hashlib
import io
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings

from imgbed.errors import ImageNotAllowed, ImageNotFound, ImageRejected
from imgbed.models import Image
from imgbed.paths import clean_filename, clean_path, image_key, join_url
from imgbed.storage import object_delete, object_exists, object_put
from imgbed.validation import inspect_image

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Refusal:
    name: str
    reason: str


def _digest(fileobj) -> tuple[str, int]:
    fileobj.seek(0)
    digest = hashlib.sha256()
    size = 0
    for chunk in iter(lambda: fileobj.read(64 * 1024), b""):
        digest.update(chunk)
        size += len(chunk)
    fileobj.seek(0)
    return digest.hexdigest(), size


def _check_owner(image: Image | None, owner: str | None, key: str) -> None:
    """An image is replaced or deleted only by its owner. An image without an owner (stored before
    owners, or by a caller that names none) is anyone's; owner None is staff, who may do anything."""
    if owner is not None and image is not None and image.owner and image.owner != owner:
        raise ImageNotAllowed(f"{key}: another user's image; not allowed")


def _image_store(*, path: str, filename: str, fileobj, size: int, uploader: str, owner: str) -> Image:
    path = clean_path(path)
    filename = clean_filename(filename)
    key = image_key(path, filename)
    limit = settings.IMGBED_MAX_BYTES
    if size > limit:
        raise ImageRejected(f"{filename}: {size} bytes, over the limit of {limit}")
    info = inspect_image(fileobj)
    sha256, actual_size = _digest(fileobj)
    if actual_size > limit:
        raise ImageRejected(f"{filename}: {actual_size} bytes, over the limit of {limit}")
    # whose it is, last: a refused image costs no query and no object store call
    _check_owner(Image.objects.filter(path=path, filename=filename).first(), owner, key)
    object_put(key=key, fileobj=fileobj, content_type=info.content_type)
    image, created = Image.objects.update_or_create(
        path=path,
        filename=filename,
        defaults={
            "size": actual_size,
            "content_type": info.content_type,
            "width": info.width,
            "height": info.height,
            "sha256": sha256,
            "uploader": uploader[:255],
            "owner": owner[:255],
        },
    )
    logger.info("image %s %s by %s (%d bytes, %s)", "stored" if created else "replaced", key, uploader, actual_size, info.content_type)
    return image


def image_save_bytes(*, path: str, filename: str, data: bytes, uploader: str, owner: str = "") -> Image:
    """Store one image given as bytes (e.g. an export's thumbnail) at <path>/<filename>.

    Validates the path, the name, the size and the content as an upload does; writes the object
    and creates or updates its Image row. Raises ImageRejected (a ServiceError, kind "invalid";
    ImagePathInvalid for a bad path or name; ImageNotAllowed when another user owns that image)
    when refused, ImageStorageError when the object store fails.
    """
    return _image_store(path=path, filename=filename, fileobj=io.BytesIO(data), size=len(data), uploader=uploader,
                        owner=owner)


def image_upload(*, path: str, files: Iterable, uploader: str) -> list[Refusal]:
    """Store each uploaded file at <path>/<its name>; the refused ones are returned, the others stored.

    The path is checked before anything is written (ImagePathInvalid for the whole request).
    """
    path = clean_path(path)
    refused = []
    for upload in files:
        name = upload.name or ""
        try:
            _image_store(path=path, filename=name, fileobj=upload, size=upload.size or 0, uploader=uploader,
                         owner=uploader)
        except ImageRejected as exc:
            logger.info("image upload refused: %s/%s: %s", path, name, exc.message)
            refused.append(Refusal(name=name, reason=exc.message))
    return refused


def image_delete(*, path: str, filename: str, owner: str | None = None) -> None:
    """Delete the image at <path>/<filename>: its object and its row; ImageNotFound when neither
    exists, ImageNotAllowed when it is another user's."""
    path = clean_path(path)
    filename = clean_filename(filename)
    key = image_key(path, filename)
    image = Image.objects.filter(path=path, filename=filename).first()
    if image is None and not object_exists(key=key):
        raise ImageNotFound(f"{key}: no such image")
    _check_owner(image, owner, key)
    object_delete(key=key)
    if image is not None:
        image.delete()
    logger.info("image deleted %s", key)


def image_url(*, path: str, filename: str) -> str:
    """The public URL of an image: IMGBED_URL_PREFIX + path + '/' + filename, single slashes.

    With the default prefix '/', image_url(path="peer", filename="a.jpg") == "/peer/a.jpg".
    """
    return join_url(settings.IMGBED_URL_PREFIX, clean_path(path), clean_filename(filename))
