"""Exceptions raised by the media engine."""


class MediaError(Exception):
    """Media undecodable, encode failed or input missing; the message is meant for a human."""


class ManifestError(MediaError):
    """Manifest (MPD / m3u8) unparsable or unsupported."""


class KeyUnavailable(MediaError):
    """The AES-128 key of encrypted segments (HLS EXT-X-KEY) cannot be read: its object is not in
    the downloaded files.  `key` is its storage key.  What is missing is in the source storage, not
    in the media: the export layer answers it as a source storage error, naming the key."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key
