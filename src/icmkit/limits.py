"""Resource limits: every input is refused, with one line, before it can cost more than these.

Each limit has a default that lets every real photo through and an environment variable to change it
(docs/security.md has the table and what each bounds):

=========================== ======================== ==================================================
environment variable        default                  bounds
=========================== ======================== ==================================================
``ICM_MAX_PIXELS``          67,108,864 (2²⁶, 67 MP)  pixels of an image or of a stream's declared size
``ICM_MAX_INPUT_BYTES``     536,870,912 (512 MiB)    bytes read from any input file (image, stream, features)
``ICM_MAX_JPEG_SCANS``      100                      scans (SOS markers) in a JPEG before decoding it: up to
                                                     16.7 MP; proportionally fewer above (25 at 67 MP), ≥ 10
``ICM_MAX_DECODE_MEMORY``   640 MiB                  working memory a learned decoder or a features tail may
                                                     use, estimated from the header before any allocation
=========================== ======================== ==================================================

Light on purpose (no numpy, no Pillow): the ``.icm`` reader and the command line use it before anything heavy
is imported.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from icmkit.bitreader import BitReader
from icmkit.errors import BitstreamError, InputImageError, ResourceLimitError

# Widths and depths of icmkit's compression models, in a training config and in a weights file alike: far above
# any real model, far below what exhausts a machine when the model is built.
MODEL_SIZE_RANGES: dict[str, tuple[int, int]] = {
    "N": (1, 1024),
    "M": (1, 1024),
    "hyper": (1, 1024),
    "re_width": (1, 1024),
    "re_latent": (1, 1024),
    "latent_levels": (1, 6),
    "re_levels": (0, 6),
}

DEFAULT_MAX_PIXELS = 1 << 26  # 67 MP: above 8K UHD (33 MP)
ENVIRONMENT = "ICM_MAX_PIXELS"
DEFAULT_MAX_INPUT_BYTES = 1 << 29  # 512 MiB: an uncompressed 16-bit RGB image at the pixel limit is 403 MB
INPUT_BYTES_ENVIRONMENT = "ICM_MAX_INPUT_BYTES"
DEFAULT_MAX_JPEG_SCANS = 100  # libjpeg's progressive scripts write 6-10 scans; mozjpeg's searched ones fewer than 20
JPEG_SCANS_ENVIRONMENT = "ICM_MAX_JPEG_SCANS"
_SCAN_PIXELS = 1 << 24  # the full scan allowance up to 16.7 MP; larger JPEGs get proportionally fewer scans
DEFAULT_MAX_DECODE_MEMORY = 640 << 20  # with torch's ~0.9 GB resident, a learned decode stays under 1.5 GB
DECODE_MEMORY_ENVIRONMENT = "ICM_MAX_DECODE_MEMORY"

_SUFFIXES = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _positive(name: str, default: int, sizes: bool = False) -> int:
    """A positive integer from the environment (``sizes``: with an optional K/M/G/T binary suffix), else the default."""
    value = os.environ.get(name)
    if value is None or not value.strip():
        return default
    text = value.strip().upper().removesuffix("IB").removesuffix("B") if sizes else value.strip()
    scale = 1
    if sizes and text[-1:] in _SUFFIXES and not text[-1:].isdigit():
        text, scale = text[:-1], _SUFFIXES[text[-1]]
    try:
        limit = int(text) * scale
    except ValueError:
        what = "an integer (bytes; K, M, G suffixes allowed)" if sizes else "an integer"
        raise ResourceLimitError(f"{name} must be {what}, got {value!r}") from None
    if limit <= 0:
        raise ResourceLimitError(f"{name} must be positive, got {value!r}")
    return limit


def max_pixels() -> int:
    """The configured pixel limit: ``ICM_MAX_PIXELS`` in the environment, else the default."""
    return _positive(ENVIRONMENT, DEFAULT_MAX_PIXELS)


def max_input_bytes() -> int:
    """Bytes read at most from one input file: ``ICM_MAX_INPUT_BYTES``, else 512 MiB."""
    return _positive(INPUT_BYTES_ENVIRONMENT, DEFAULT_MAX_INPUT_BYTES, sizes=True)


def max_jpeg_scans() -> int:
    """Scans a JPEG may hold: ``ICM_MAX_JPEG_SCANS``, else 100 (each scan is a pass over the whole image)."""
    return _positive(JPEG_SCANS_ENVIRONMENT, DEFAULT_MAX_JPEG_SCANS)


def max_decode_memory() -> int:
    """Working memory a learned decoder may need: ``ICM_MAX_DECODE_MEMORY``, else 640 MiB."""
    return _positive(DECODE_MEMORY_ENVIRONMENT, DEFAULT_MAX_DECODE_MEMORY, sizes=True)


def check_pixel_count(width: int, height: int, limit: int | None = None) -> None:
    """Refuse an input image larger than the limit (read from its header, before decoding)."""
    _check(width, height, limit, InputImageError, f"image of {width}×{height}", " exceeds the limit of")


def check_declared_size(width: int, height: int, what: str, limit: int | None = None) -> None:
    """Refuse a stream whose header declares more pixels than the limit, before decoding it."""
    _check(width, height, limit, BitstreamError, f"{what}: stream declares {width}×{height}", ", over the limit of")


def check_decode_memory(estimate: int, what: str, doing: str = "to decode") -> None:
    """Refuse a decode whose working memory, estimated from its header, is above ``ICM_MAX_DECODE_MEMORY``."""
    limit = max_decode_memory()
    if estimate > limit:
        raise ResourceLimitError(
            f"{what} needs about {_mib(estimate)} of working memory {doing}, over the limit of {_mib(limit)} "
            f"(set {DECODE_MEMORY_ENVIRONMENT} to raise it, e.g. {DECODE_MEMORY_ENVIRONMENT}={-(-estimate >> 30)}G)"
        )


def allowed_jpeg_scans(pixels: int) -> int:
    """Scans allowed in a JPEG of ``pixels``: ``ICM_MAX_JPEG_SCANS`` up to 16.7 MP (2²⁴), fewer above in
    proportion (each scan is a pass over the whole image: the product bounds the time), never fewer than 10
    (what libjpeg's progressive mode writes)."""
    limit = max_jpeg_scans()
    return max(min(limit, 10), limit * _SCAN_PIXELS // max(pixels, _SCAN_PIXELS))


def check_jpeg_scans(data: bytes, what: str, error: type[Exception] = InputImageError) -> None:
    """Refuse a JPEG with more scans than :func:`allowed_jpeg_scans`, counted from its markers before
    decoding (libjpeg decodes every scan over the whole image: thousands of tiny scans cost minutes)."""
    width, height = jpeg_frame_size(data)
    allowed = allowed_jpeg_scans(width * height)
    scans = count_jpeg_scans(data, stop_after=allowed)
    if scans > allowed:
        raise error(
            f"{what}: JPEG with more than {allowed:,} scans{f' at {width}×{height}' if width * height else ''} "
            f"(progressive JPEGs have about 10; set {JPEG_SCANS_ENVIRONMENT} to raise the limit)"
        )


def jpeg_frame_size(data: bytes) -> tuple[int, int]:
    """Width and height from a JPEG's first SOFn segment; (0, 0) when there is none before the first scan."""
    for marker, pos, length in _jpeg_segments(data):
        if marker == 0xDA:
            break
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and length >= 7 and pos + 9 <= len(data):
            return int.from_bytes(data[pos + 7 : pos + 9], "big"), int.from_bytes(data[pos + 5 : pos + 7], "big")
    return 0, 0


def count_jpeg_scans(data: bytes, stop_after: int | None = None) -> int:
    """The number of SOS markers in a JPEG, by walking its marker segments and skipping each scan's
    entropy-coded data (0xFF is stuffed there; RSTn markers are part of it). Stops counting past
    ``stop_after``; a malformed tail ends the count (the decoder reports it)."""
    scans = 0
    for marker, _, _ in _jpeg_segments(data):
        if marker == 0xDA:
            scans += 1
            if stop_after is not None and scans > stop_after:
                break
    return scans


def _jpeg_segments(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(marker, position, length field) of each marker segment up to EOI, scans' entropy-coded data skipped."""
    size = len(data)
    if size < 4 or data[0] != 0xFF or data[1] != 0xD8:
        return
    pos = 2
    while pos + 1 < size:
        if data[pos] != 0xFF:
            return
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:  # EOI
            return
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # standalone markers
            pos += 2
            continue
        if pos + 4 > size:
            return
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if length < 2:
            return
        yield marker, pos, length
        pos += 2 + length
        if marker != 0xDA:
            continue
        while True:  # entropy-coded data: up to the next 0xFF not followed by 0x00 or RSTn
            pos = data.find(b"\xff", pos)
            if pos < 0 or pos + 1 >= size:
                return
            following = data[pos + 1]
            if following == 0x00 or 0xD0 <= following <= 0xD7:
                pos += 2
            elif following == 0xFF:
                pos += 1
            else:
                break


def check_avif_frames(
    data: bytes, what: str, limit: int | None = None, error: type[Exception] = InputImageError
) -> None:
    """Refuse an AVIF whose AV1 sequence headers (``av1C`` boxes, items' data) allow frames over the pixel limit,
    whatever its ``ispe`` box (which Pillow reports as the size) says: libavif allocates the frame the
    AV1 stream codes, up to its own 16384² limit."""
    limit = max_pixels() if limit is None else limit
    for width, height in avif_frame_sizes(data):
        if width * height > limit:
            raise error(
                f"{what}: AVIF frames of up to {width}×{height} = {width * height:,} pixels, over the limit of "
                f"{limit:,} (set {ENVIRONMENT} to raise it)"
            )


def check_avif_canvas(
    data: bytes, canvas: tuple[int, int], what: str, error: type[Exception] = InputImageError
) -> None:
    """Refuse an AVIF whose ``ispe`` canvas (``(width, height)``, the size Pillow reports and decodes to) holds more
    pixels than all its coded AV1 frames together: a grid image's canvas is tiled by its items' frames, so a larger
    canvas can only be a tiny frame scaled up to the pixel limit — a file of a few hundred bytes costing the memory
    and time of the largest image allowed. Files whose items' sequence headers cannot be read are left to libavif."""
    frames = _item_frame_sizes(data)
    coded = sum(width * height for width, height in frames)
    if frames and canvas[0] * canvas[1] > coded:
        raise error(
            f"{what}: malformed AVIF: its canvas of {canvas[0]}×{canvas[1]} is larger than its coded frames "
            f"({coded:,} pixels in {len(frames)} item{'s' if len(frames) > 1 else ''})"
        )


def _item_frame_sizes(data: bytes) -> list[tuple[int, int]]:
    """The maximum frame size of each item whose data starts with an AV1 sequence header (located by ``iloc``)."""
    sizes = []
    for iloc in _boxes(data, 0, len(data), b"iloc", depth=0):
        try:
            extents = list(_iloc_extents(iloc))
        except IndexError:
            continue
        for offset, length in extents:
            try:
                size = _av1_sequence_size(data[offset : offset + min(length, 4096)])
            except (IndexError, ValueError):
                continue
            if size is not None:
                sizes.append(size)
    return sizes


def avif_frame_sizes(data: bytes) -> list[tuple[int, int]]:
    """The maximum frame sizes (width, height) that the AV1 sequence headers of an AVIF declare: those in its
    ``av1C`` boxes and those at the start of each item's data (located through ``iloc``); empty where there
    are none or the boxes are malformed (the decoder then reports the file)."""
    sizes: list[tuple[int, int]] = []
    payloads = [config[4:] for config in _boxes(data, 0, len(data), b"av1C", depth=0)]
    for iloc in _boxes(data, 0, len(data), b"iloc", depth=0):
        try:
            payloads.extend(data[offset : offset + min(length, 4096)] for offset, length in _iloc_extents(iloc))
        except IndexError:
            continue
    for obus in payloads:
        try:
            size = _av1_sequence_size(obus)
        except (IndexError, ValueError):
            continue
        if size is not None:
            sizes.append(size)
    return sizes


_CONTAINERS = {b"meta": 4, b"iprp": 0, b"ipco": 0}  # boxes holding boxes (meta is a full box: 4 bytes first)


def _boxes(data: bytes, start: int, end: int, wanted: bytes, depth: int) -> Iterator[bytes]:
    pos = start
    while pos + 8 <= end and depth < 4:
        size, kind = int.from_bytes(data[pos : pos + 4], "big"), data[pos + 4 : pos + 8]
        header = 8
        if size == 1 and pos + 16 <= end:
            size, header = int.from_bytes(data[pos + 8 : pos + 16], "big"), 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            return
        if kind == wanted:
            yield data[pos + header : pos + size]
        elif kind in _CONTAINERS:
            yield from _boxes(data, pos + header + _CONTAINERS[kind], pos + size, wanted, depth + 1)
        pos += size


def _iloc_extents(box: bytes) -> Iterator[tuple[int, int]]:
    """(file offset, length) of the first extent of each item an ``iloc`` box locates in the file itself."""
    version = box[0]
    pos = 4

    def field(size: int) -> int:
        nonlocal pos
        if pos + size > len(box):
            raise IndexError("truncated iloc")
        value = int.from_bytes(box[pos : pos + size], "big")
        pos += size
        return value

    sizes = field(1)
    offset_size, length_size = sizes >> 4, sizes & 0xF
    sizes = field(1)
    base_size, index_size = sizes >> 4, (sizes & 0xF if version in (1, 2) else 0)
    for _ in range(field(2 if version < 2 else 4)):
        field(2 if version < 2 else 4)  # item_ID
        method = field(2) & 0xF if version in (1, 2) else 0
        field(2)  # data_reference_index
        base = field(base_size)
        extents = [(field(index_size), field(offset_size), field(length_size))[1:] for _ in range(field(2))]
        if method == 0 and extents:
            yield base + extents[0][0], extents[0][1]


def _av1_sequence_size(obus: bytes) -> tuple[int, int] | None:
    """(max_frame_width, max_frame_height) of the first sequence header OBU in ``obus`` (AV1 spec 5.5)."""
    pos = 0
    while pos < len(obus):
        header = obus[pos]
        kind, extension, has_size = (header >> 3) & 0xF, (header >> 2) & 1, (header >> 1) & 1
        pos += 1 + extension
        if has_size:
            length, shift = 0, 0
            while True:
                byte = obus[pos]
                pos += 1
                length |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80 or shift > 56:
                    break
        else:
            length = len(obus) - pos
        if kind == 1:
            return _parse_sequence_header(obus[pos : pos + length])
        pos += length
    return None


def _parse_sequence_header(payload: bytes) -> tuple[int, int]:
    bits = BitReader(payload)
    bits.read(3)  # seq_profile
    bits.read(1)  # still_picture
    if bits.read(1):  # reduced_still_picture_header
        bits.read(5)
    else:
        decoder_model = False
        delay_bits = 0
        if bits.read(1):  # timing_info_present_flag
            bits.read(32), bits.read(32)
            if bits.read(1):  # equal_picture_interval
                bits.ue()
            decoder_model = bool(bits.read(1))
            if decoder_model:
                delay_bits = bits.read(5) + 1
                bits.read(32), bits.read(5), bits.read(5)
        display_delay = bits.read(1)
        for _ in range(bits.read(5) + 1):  # operating points
            bits.read(12)
            if bits.read(5) > 7:
                bits.read(1)
            if decoder_model and bits.read(1):
                bits.read(delay_bits), bits.read(delay_bits), bits.read(1)
            if display_delay and bits.read(1):
                bits.read(4)
    width_bits, height_bits = bits.read(4) + 1, bits.read(4) + 1
    return bits.read(width_bits) + 1, bits.read(height_bits) + 1


def _mib(count: int) -> str:
    return f"{count / (1 << 20):,.0f} MiB"


def _check(width: int, height: int, limit: int | None, error: type[Exception], subject: str, verb: str) -> None:
    limit = max_pixels() if limit is None else limit
    if width * height > limit:
        raise error(f"{subject} = {width * height:,} pixels{verb} {limit:,} (set {ENVIRONMENT} to raise it)")
