"""Image dimensions read from encoded bytes without decoding a pixel (decompression-bomb guard).

Bytes are parsed by hand: PIL's ``Image.open`` is not used, because ultralytics replaces it
process-wide with a version that tries to pip-install plugins on unknown data.
"""

from __future__ import annotations

from typing import TypeAlias

Buffer: TypeAlias = bytes | bytearray | memoryview

#: What ``declared_size`` reads (and so what ``dtseg.io.load_image`` decodes).
SUPPORTED_FORMATS = "PNG, JPEG, GIF, BMP, WebP, TIFF, PNM (PBM/PGM/PPM)"


def declared_size(data: Buffer) -> tuple[int, int] | None:
    """``(width, height)`` declared by a PNG, JPEG, GIF, BMP, WebP, TIFF or PNM file, else ``None``.

    ``data`` is the whole file: a JPEG's frame header and a TIFF's directory may lie far
    from the start. Only headers are read (no pixel data, no decompression).
    """
    size = _declared(data)
    return size if size is not None and min(size) >= 0 else None  # -1: the header was cut short


def _declared(data: Buffer) -> tuple[int, int] | None:
    head = bytes(data[:32])
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 24:
        return _u(head, 16, 4, "big"), _u(head, 20, 4, "big")
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        return _u(head, 6, 2), _u(head, 8, 2)
    if head[:2] == b"BM" and len(head) >= 26:
        if _u(head, 14, 4) == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
            return _u(head, 18, 2), _u(head, 20, 2)
        width, height = (int.from_bytes(head[at:at + 4], "little", signed=True) for at in (18, 22))
        return abs(width), abs(height)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP" and len(head) >= 30:
        return _webp_size(head)
    if head[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return _tiff_size(data)
    if len(head) >= 3 and head[0:1] == b"P" and head[1:2] in b"123456" and head[2:3].isspace():
        return _pnm_size(bytes(data[:4096]))
    return None


def _u(data: Buffer, offset: int, size: int, order: str = "little") -> int:
    """Unsigned integer at ``offset`` (``-1`` past the end, which no size check accepts)."""
    chunk = data[offset:offset + size]
    return int.from_bytes(chunk, order) if len(chunk) == size else -1  # type: ignore[arg-type]


def _webp_size(head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8X":
        return 1 + _u(head, 24, 3), 1 + _u(head, 27, 3)
    if chunk == b"VP8L":
        bits = _u(head, 21, 4)
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8 ":
        return _u(head, 26, 2) & 0x3FFF, _u(head, 28, 2) & 0x3FFF
    return None


_JPEG_MAX_SEGMENTS, _JPEG_MAX_STRAY = 4096, 65536
_JPEG_FRAME_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(data: Buffer) -> tuple[int, int] | None:
    """Walk the JPEG markers (segment lengths let it jump) to the first start-of-frame segment.

    Bounded work on hostile data: at most ``_JPEG_MAX_SEGMENTS`` segments and ``_JPEG_MAX_STRAY``
    stray bytes between them; scan data or an end of image before a frame header is ``None``.
    """
    i, segments, stray = 2, 0, 0
    while i + 9 < len(data) and segments < _JPEG_MAX_SEGMENTS and stray <= _JPEG_MAX_STRAY:
        if data[i] != 0xFF or data[i + 1] == 0xFF:  # stray or fill bytes
            i, stray = i + 1, stray + 1
            continue
        marker, length = data[i + 1], _u(data, i + 2, 2, "big")
        if marker in _JPEG_FRAME_MARKERS:
            return _u(data, i + 7, 2, "big"), _u(data, i + 5, 2, "big")
        if marker in (0xD9, 0xDA) or length < 2:  # end of image, start of scan, or a broken length
            return None
        i, segments = i + 2 + length, segments + 1
    return None


#: TIFF tags ImageWidth, ImageLength; field types SHORT, LONG, LONG8 -> bytes.
_TIFF_WIDTH, _TIFF_HEIGHT = 256, 257
_TIFF_TYPES = {3: 2, 4: 4, 16: 8}


def _tiff_size(data: Buffer) -> tuple[int, int] | None:
    """Width and height of the first image directory (classic TIFF and BigTIFF, either byte order)."""
    order = "little" if bytes(data[:2]) == b"II" else "big"
    big = _u(data, 2, 2, order) == 43
    offset = _u(data, 8, 8, order) if big else _u(data, 4, 4, order)
    count_size, entry_size, value_at = (8, 20, 12) if big else (2, 12, 8)
    count = _u(data, offset, count_size, order) if offset >= 0 else -1
    found: dict[int, int] = {}
    for k in range(max(0, min(count, 4096))):
        entry = offset + count_size + k * entry_size
        tag, kind = _u(data, entry, 2, order), _u(data, entry + 2, 2, order)
        if tag in (_TIFF_WIDTH, _TIFF_HEIGHT) and kind in _TIFF_TYPES:
            found[tag] = _u(data, entry + value_at, _TIFF_TYPES[kind], order)
    if _TIFF_WIDTH in found and _TIFF_HEIGHT in found:
        return found[_TIFF_WIDTH], found[_TIFF_HEIGHT]
    return None


def _pnm_size(head: bytes) -> tuple[int, int] | None:
    """Netpbm: ``P<n>``, then width and height as decimal tokens (``#`` comments skipped)."""
    lines = [line.split(b"#", 1)[0] for line in head[2:].split(b"\n")]
    tokens = b" ".join(lines).split()
    if len(tokens) >= 2 and tokens[0].isdigit() and tokens[1].isdigit():
        return int(tokens[0]), int(tokens[1])
    return None
