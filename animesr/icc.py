"""ICC colour profiles (read with a picture's header, in animesr.imaging), embedded in the upscaled one.

Pixels are decoded as stored, never converted to sRGB, so the source's profile still describes
the output; without it a Display P3 or Adobe RGB picture would show in sRGB's duller colours.
PNG (iCCP), JPEG (APP2) and WebP (ICCP) hold one; it is added to the bytes OpenCV encoded, so
the pixels are the same with or without it.
"""

from __future__ import annotations

import struct
import zlib

GREY, RGB = b"GRAY", b"RGB "  # the colour spaces of the pixels animesr reads and writes

_JPEG_MARKER = b"ICC_PROFILE\0"
_JPEG_PART = 65535 - 2 - len(_JPEG_MARKER) - 2  # an APP2 segment's room: length, marker, part number, count
_WEBP_ICC_FLAG, _WEBP_ALPHA_FLAG = 0x20, 0x10


def colour_space(profile: bytes) -> bytes:
    """The data colour space of the profile's header: b"RGB ", b"GRAY", b"CMYK", ..."""
    return profile[16:20]


def describes(profile: bytes, *, grey: bool) -> bool:
    """Whether `profile` is one for grey (or else RGB) pixels; a CMYK picture, for instance, is
    decoded to RGB, which its profile does not describe."""
    return colour_space(profile) == (GREY if grey else RGB)


def embedded(payload: bytes, fmt: str, profile: bytes, *, width: int, height: int, alpha: bool) -> bytes:
    """The encoded picture `payload` (png, jpg, webp of width × height pixels) with `profile` in it."""
    if fmt == "png":
        return _png_with(payload, profile)
    if fmt == "jpg":
        return _jpeg_with(payload, profile)
    return _webp_with(payload, profile, width=width, height=height, alpha=alpha)


def _png_with(payload: bytes, profile: bytes) -> bytes:
    body = b"ICC profile\0\0" + zlib.compress(profile)  # name, NUL, compression method 0 (zlib)
    after_header = 8 + 25  # the signature, then IHDR: always first, 13 bytes of data
    return payload[:after_header] + png_chunk(b"iCCP", body) + payload[after_header:]


def png_chunk(kind: bytes, body: bytes) -> bytes:
    """A PNG chunk: length, type, data, CRC of type and data."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _jpeg_with(payload: bytes, profile: bytes) -> bytes:
    parts = [profile[at: at + _JPEG_PART] for at in range(0, len(profile), _JPEG_PART)]
    if len(parts) > 255:  # the part count is one byte: no JPEG holds a profile this large
        return payload
    segments = b"".join(b"\xff\xe2" + struct.pack(">H", 2 + len(_JPEG_MARKER) + 2 + len(part)) + _JPEG_MARKER
                        + bytes([number, len(parts)]) + part for number, part in enumerate(parts, 1))
    at = _after_jfif_header(payload)
    return payload[:at] + segments + payload[at:]


def _after_jfif_header(payload: bytes) -> int:
    """Where the segments after SOI, and after the APP0 (JFIF) segment that must come first, begin."""
    if payload[2:4] == b"\xff\xe0":
        return 4 + struct.unpack(">H", payload[4:6])[0]
    return 2


def _webp_with(payload: bytes, profile: bytes, *, width: int, height: int, alpha: bool) -> bytes:
    """A profile needs WebP's extended layout: a VP8X chunk first, with the ICC flag, then ICCP."""
    chunks = payload[12:]  # after "RIFF", the size, "WEBP"
    if chunks[:4] == b"VP8X":
        header = chunks[:8] + bytes([chunks[8] | _WEBP_ICC_FLAG]) + chunks[9:18]
        chunks = chunks[18:]
    else:
        flags = _WEBP_ICC_FLAG | (_WEBP_ALPHA_FLAG if alpha else 0)
        header = (b"VP8X" + struct.pack("<I", 10) + bytes([flags, 0, 0, 0])
                  + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little"))
    iccp = b"ICCP" + struct.pack("<I", len(profile)) + profile + b"\0" * (len(profile) % 2)
    body = b"WEBP" + header + iccp + chunks
    return b"RIFF" + struct.pack("<I", len(body)) + body
