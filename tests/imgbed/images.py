"""Real images made with Pillow for the image bed tests."""

import io
import os

from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image


def make_image(fmt: str, size=(40, 24), color=(200, 30, 90), noise: bool = False, **save) -> bytes:
    if noise:
        image = Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3))
    else:
        image = Image.new("RGB", size, color)
    if fmt == "GIF":
        image = image.convert("P")
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save)
    return buffer.getvalue()


def png(**kwargs) -> bytes:
    return make_image("PNG", **kwargs)


def jpeg(**kwargs) -> bytes:
    return make_image("JPEG", quality=90, **kwargs)


def gif(**kwargs) -> bytes:
    return make_image("GIF", **kwargs)


def webp(**kwargs) -> bytes:
    return make_image("WEBP", **kwargs)


def upload_file(name: str, data: bytes, content_type: str = "application/octet-stream") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type=content_type)


def body_of(response) -> bytes:
    if response.streaming:
        return b"".join(response.streaming_content)
    return response.content
