"""AES-128 encrypted parts (HLS ``#EXT-X-KEY:METHOD=AES-128``), decrypted as FFmpeg reads them.

A whole segment (or an EXT-X-MAP initialization) is AES-128-CBC with PKCS7 padding.  In CBC a
block is decrypted from itself and the ciphertext block before it, so an encrypted file is read
like a plain one, seeking anywhere and decrypting only the blocks read: no decrypted copy is
written, and memory stays at what FFmpeg asks for at a time.
"""
from __future__ import annotations

import io
import os

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .errors import MediaError

__all__ = ["EncryptedFile", "read_key"]

BLOCK = 16  # AES block size, and the size of an AES-128 key and of its IV


def read_key(path: str, name: str) -> bytes:
    """The 16 bytes of the AES-128 key object `name` downloaded at `path`."""
    with open(path, "rb") as f:
        key = f.read(BLOCK + 1)
    if len(key) != BLOCK:
        raise MediaError(f"the AES-128 key {name} holds {len(key)} bytes, not {BLOCK}")
    return key


class EncryptedFile:
    """A downloaded file encrypted with AES-128-CBC (PKCS7 padding) under `key` and `iv`; `name`
    (its part's name) is for messages."""

    def __init__(self, path: str, key: bytes, iv: bytes, name: str):
        self.path = path
        self.key = key
        self.iv = iv
        self.name = name
        self.size = self._plain_size()

    def _decrypt(self, iv: bytes, data: bytes) -> bytes:
        return Cipher(algorithms.AES(self.key), modes.CBC(iv)).decryptor().update(data)

    def _plain_size(self) -> int:
        """The size without the padding, read from the last block alone."""
        size = os.path.getsize(self.path)
        if size == 0 or size % BLOCK:
            raise MediaError(f"{self.name} is not AES-128 encrypted: {size} bytes is not a whole number of "
                             f"{BLOCK}-byte blocks")
        with open(self.path, "rb") as f:
            f.seek(max(0, size - 2 * BLOCK))
            tail = f.read(2 * BLOCK)
        iv = tail[:BLOCK] if len(tail) == 2 * BLOCK else self.iv
        last = self._decrypt(iv, tail[-BLOCK:])
        pad = last[-1]
        if not 1 <= pad <= BLOCK or last[-pad:] != bytes([pad]) * pad:
            # a wrong key (or a wrong IV for a one-block file) leaves random bytes, not PKCS7 padding
            raise MediaError(f"{self.name} does not decrypt with its AES-128 key (no PKCS7 padding at its end)")
        return size - pad

    def open(self) -> io.RawIOBase:
        return _DecryptingReader(self)


class _DecryptingReader(io.RawIOBase):
    """Seekable, read-only plaintext of an EncryptedFile."""

    def __init__(self, src: EncryptedFile):
        super().__init__()
        self.src = src
        self.fh = open(src.path, "rb")  # noqa: SIM115 (closed with the reader)
        self.pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.src.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def readinto(self, b) -> int:
        n = min(len(b), self.src.size - self.pos)
        if n <= 0:
            return 0
        first = self.pos - self.pos % BLOCK  # the blocks holding [pos, pos + n)
        end = -(-(self.pos + n) // BLOCK) * BLOCK
        if first:
            self.fh.seek(first - BLOCK)
            iv = self.fh.read(BLOCK)  # a block's IV is the ciphertext block before it
        else:
            self.fh.seek(0)
            iv = self.src.iv
        plain = self.src._decrypt(iv, self.fh.read(end - first))
        at = self.pos - first
        memoryview(b)[:n] = plain[at:at + n]
        self.pos += n
        return n

    def close(self) -> None:
        self.fh.close()
        super().close()
