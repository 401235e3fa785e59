"""Exceptions raised by the media engine."""


class MediaError(Exception):
    """Media undecodable, encode failed or input missing; the message is meant for a human."""


class ManifestError(MediaError):
    """Manifest (MPD / m3u8) unparsable or unsupported."""
