"""Rules for names that become parts of object keys (PeerId, FileName, image names): one place,
used by the export API and the image bed."""

import unicodedata

MAX_NAME_BYTES = 255
# Cc: C0/C1 controls (NUL, \t, \n, DEL, …); Cf: format characters (bidi overrides, zero width);
# Cs: lone surrogates; Zl/Zp: line and paragraph separators.
REFUSED_CATEGORIES = {"Cc", "Cf", "Cs", "Zl", "Zp"}


def character_problem(value: str) -> str | None:
    """Why `value` holds a character no key element may hold, or None."""
    for char in value:
        if char == "\\":
            return "backslashes are not allowed"
        if unicodedata.category(char) in REFUSED_CATEGORIES:
            return f"control character U+{ord(char):04X} is not allowed"
    return None


def name_problem(value: str) -> str | None:
    """Why `value` is not a plain name (one key element: no '/', not '.' or '..', no control or
    format characters, at most 255 UTF-8 bytes), or None."""
    problem = character_problem(value)
    if problem:
        return problem
    if "/" in value:
        return "'/' is not allowed"
    if value in (".", ".."):
        return f"'{value}' is not a name"
    if len(value.encode("utf-8")) > MAX_NAME_BYTES:
        return f"longer than {MAX_NAME_BYTES} bytes"
    return None
