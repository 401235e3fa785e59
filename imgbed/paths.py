"""Safe image paths and file names: pure functions, no I/O.

A path is relative and ``/``-separated; a single leading slash (as in an export's ImagePath) and a
single trailing slash are read as relative. Refused: empty components (``a//b``, ``//a``), ``.``
and ``..`` components, backslashes, NUL and every other control or format character, components or
names over 255 UTF-8 bytes, and object keys (``<path>/<filename>``) over 1024 bytes. A file name
must end in an image extension, so that the image is reachable by the image bed's URL.
"""

from urllib.parse import quote, urlsplit

from imgbed.errors import ImagePathInvalid
from resourced.names import MAX_NAME_BYTES, character_problem

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".webp")
MAX_KEY_BYTES = 1024


def _check_characters(value: str, label: str) -> None:
    problem = character_problem(value)
    if problem:
        raise ImagePathInvalid(f"{label}: {problem}")


def _check_component(component: str, label: str) -> None:
    if component == "":
        raise ImagePathInvalid(f"{label}: empty path component (absolute path or '//')")
    if component in (".", ".."):
        raise ImagePathInvalid(f"{label}: '{component}' components are not allowed")
    if len(component.encode("utf-8")) > MAX_NAME_BYTES:
        raise ImagePathInvalid(f"{label}: a component is longer than {MAX_NAME_BYTES} bytes")


def clean_path(value) -> str:
    """The normalised relative path, or ImagePathInvalid."""
    if not isinstance(value, str):
        raise ImagePathInvalid("path: must be a string")
    _check_characters(value, "path")
    if value.startswith("/"):
        value = value[1:]
    if value.endswith("/"):
        value = value[:-1]
    if not value:
        raise ImagePathInvalid("path: required")
    for component in value.split("/"):
        _check_component(component, "path")
    if len(value.encode("utf-8")) > MAX_KEY_BYTES:
        raise ImagePathInvalid(f"path: longer than {MAX_KEY_BYTES} bytes")
    return value


def clean_filename(value) -> str:
    """The file name itself (no slashes, an image extension), or ImagePathInvalid."""
    if not isinstance(value, str):
        raise ImagePathInvalid("filename: must be a string")
    if not value:
        raise ImagePathInvalid("filename: required")
    _check_characters(value, "filename")
    if "/" in value:
        raise ImagePathInvalid("filename: may not contain '/'")
    _check_component(value, "filename")
    stem, _dot, extension = value.rpartition(".")
    if not stem or "." + extension.lower() not in IMAGE_EXTENSIONS:
        raise ImagePathInvalid("filename: must be a name ending in " + ", ".join(IMAGE_EXTENSIONS))
    return value


def image_key(path: str, filename: str) -> str:
    """The object key of a cleaned path and file name, or ImagePathInvalid when too long."""
    key = f"{path}/{filename}"
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise ImagePathInvalid(f"path + filename: longer than {MAX_KEY_BYTES} bytes")
    return key


def url_path_prefix(prefix: str) -> str:
    """The path part of IMGBED_URL_PREFIX ('/', '/img/' or 'https://img.example/'), as '/…/'."""
    path = urlsplit(prefix).path if "://" in prefix else prefix
    path = "/" + path.strip("/")
    return path if path == "/" else path + "/"


def join_url(prefix: str, path: str, filename: str) -> str:
    """prefix + path + '/' + filename with single slashes, percent-encoded (cleaned path and name)."""
    tail = quote(f"{path}/{filename}", safe="/")
    if "://" in prefix:
        return prefix.rstrip("/") + "/" + tail
    head = "/" + prefix.strip("/")
    return (head.rstrip("/") + "/" + tail) if head != "/" else "/" + tail
