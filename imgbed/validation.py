"""What an image is, by content: Pillow opens and verifies it; JPEG, PNG, GIF and WebP only."""

import warnings
from dataclasses import dataclass

from PIL import Image as PILImage

from imgbed.errors import ImageRejected

# Pillow format -> Content-Type. MPO is the multi-picture JPEG that some cameras write.
CONTENT_TYPES = {
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",
    "PNG": "image/png",
    "GIF": "image/gif",
    "WEBP": "image/webp",
}
_PLUGINS = ("JPEG", "PNG", "GIF", "WEBP")


@dataclass(frozen=True)
class ImageInfo:
    content_type: str
    width: int
    height: int


def inspect_image(fileobj) -> ImageInfo:
    """The type and size of the image in fileobj (read from its start), or ImageRejected."""
    fileobj.seek(0)
    with warnings.catch_warnings():
        # Over MAX_IMAGE_PIXELS is refused, not just warned about (decompression bombs).
        warnings.simplefilter("error", PILImage.DecompressionBombWarning)
        try:
            with PILImage.open(fileobj, formats=_PLUGINS) as image:
                image_format = image.format
                width, height = image.size
                image.verify()
        except Exception as exc:  # Pillow raises many types for malformed data; all mean "refused"
            raise ImageRejected(f"not a valid JPEG, PNG, GIF or WebP image ({type(exc).__name__})") from exc
        finally:
            fileobj.seek(0)
    content_type = CONTENT_TYPES.get(image_format)
    if content_type is None:
        raise ImageRejected(f"image type {image_format} is not accepted")
    if width <= 0 or height <= 0:
        raise ImageRejected("image has no pixels")
    return ImageInfo(content_type=content_type, width=width, height=height)
