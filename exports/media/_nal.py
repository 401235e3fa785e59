"""H.264 / HEVC NAL units: Annex B access units, parameter sets, length-prefixed (MP4) framing.

Internal helpers shared by the cut (Annex B output with parameter sets in band) and the
sources (a run of segments converted to the framing of the track's first run).
"""
from __future__ import annotations

__all__ = ["MP4_TO_ANNEXB", "START", "Nal", "is_length_prefixed", "nal_length_size"]

START = b"\x00\x00\x00\x01"
MP4_TO_ANNEXB = {"h264": "h264_mp4toannexb", "hevc": "hevc_mp4toannexb"}  # the FFmpeg bitstream filters


def is_length_prefixed(extradata: bytes | None) -> bool:
    """True for an avcC / hvcC record (MP4: NAL units prefixed with their length), False for Annex B
    extradata or none (MPEG-TS: NAL units after start codes)."""
    return bool(extradata) and extradata[0] == 1


def nal_length_size(codec: str, extradata: bytes) -> int:
    """Bytes of the length in front of each NAL unit, from an avcC / hvcC record."""
    return (extradata[21 if codec == "hevc" else 4] & 0x03) + 1


class Nal:
    """H.264 / HEVC NAL unit helpers for Annex B access units."""

    def __init__(self, codec: str):
        self.hevc = codec == "hevc"
        if self.hevc:
            self.ps_types = (32, 33, 34)  # VPS, SPS, PPS
            self.sps, self.aud = 33, 35
        else:
            self.ps_types = (7, 8)  # SPS, PPS
            self.sps, self.aud = 7, 9

    def kind(self, header: int) -> int:
        return (header >> 1) & 0x3F if self.hevc else header & 0x1F

    def units(self, data: bytes) -> list[tuple[int, int, int]]:
        """(type, start, end) of the NAL units of an Annex B buffer (start: the NAL header)."""
        out = []
        n = len(data)
        i = data.find(b"\x00\x00\x01")
        while 0 <= i and i + 3 < n:
            s = i + 3
            j = data.find(b"\x00\x00\x01", s)
            e = n if j < 0 else j
            while e > s and data[e - 1] == 0:
                e -= 1  # trailing zero bytes belong to the next start code
            out.append((self.kind(data[s]), s, e))
            i = j
        return out

    def from_extradata(self, extra: bytes | None) -> list[bytes]:
        """The parameter-set NAL units of an avcC / hvcC record or of Annex B extradata."""
        if not extra:
            return []
        if extra[0] == 1 and len(extra) > 7:
            try:
                return self._from_hvcc(extra) if self.hevc else self._from_avcc(extra)
            except IndexError:
                return []
        return [extra[s:e] for t, s, e in self.units(extra) if t in self.ps_types]

    @staticmethod
    def _from_avcc(x: bytes) -> list[bytes]:
        out = []
        i = 6
        for count in (x[5] & 0x1F, None):
            if count is None:
                count = x[i]
                i += 1
            for _ in range(count):
                size = int.from_bytes(x[i:i + 2], "big")
                out.append(x[i + 2:i + 2 + size])
                i += 2 + size
        return out

    def _from_hvcc(self, x: bytes) -> list[bytes]:
        out = []
        i = 23
        for _ in range(x[22]):
            kind = x[i] & 0x3F
            count = int.from_bytes(x[i + 1:i + 3], "big")
            i += 3
            for _ in range(count):
                size = int.from_bytes(x[i:i + 2], "big")
                if kind in self.ps_types:
                    out.append(x[i + 2:i + 2 + size])
                i += 2 + size
        return out

    def annexb_sets(self, units: list[bytes]) -> bytes:
        """Parameter-set NAL units as Annex B, in decoding order (VPS, SPS, PPS)."""
        return b"".join(START + u for t in self.ps_types for u in units if self.kind(u[0]) == t)

    def with_parameter_sets(self, data: bytes, units: list[tuple[int, int, int]], sets: bytes) -> bytes:
        """The Annex B access unit `data` (its NAL `units`) with `sets` (Annex B parameter sets) in
        front of its picture when it carries no SPS of its own, and a 4-byte start code first (what
        muxers look for); `data` itself when nothing changes."""
        new = data
        if sets and not any(t == self.sps for t, _, _ in units):
            at = units[0][2] if units and units[0][0] == self.aud else 0  # after an access unit delimiter
            new = new[:at] + sets + new[at:]
        if new[:4] != START and new[:3] == b"\x00\x00\x01":
            new = b"\x00" + new
        return new

    def length_prefixed(self, data: bytes, size: int) -> bytes:
        """An Annex B access unit as MP4 samples carry it: each NAL unit after its length (`size` bytes)."""
        return b"".join(int.to_bytes(e - s, size, "big") + data[s:e] for _, s, e in self.units(data))
