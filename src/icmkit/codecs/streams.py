"""Which codec decodes a stream: the user's choice, or the registered codec its header or signature names (a header
never resolves to a weights file); a restoration filter after a standard codec's decode (``--restore``)."""

from __future__ import annotations

from pathlib import Path

from icmkit import bitstream
from icmkit.codecs import registry
from icmkit.codecs.base import Codec
from icmkit.codecs.sniff import sniff_codec
from icmkit.errors import BitstreamError, IcmError, InputImageError
from icmkit.fileio import read_user_file


def read_stream_file(path: str | Path) -> bytes:
    """A compressed file's bytes, with the user errors a command reports (missing, a folder, a device or FIFO,
    over ``ICM_MAX_INPUT_BYTES``: see :mod:`icmkit.limits`)."""
    return read_user_file(path, None, InputImageError)


def codec_for_stream(
    data: bytes, codec: str | Codec | None = None, how_to_name: str = "codec=...", restore: str | None = None
) -> Codec:
    """The codec that decodes ``data``: ``codec`` if given (a name, or a weights file: the caller's choice), else
    the *registered* codec its header or signature names — a header never resolves to a file.
    ``how_to_name`` is how the caller names a codec in the error (the command line says ``--codec NAME``).
    ``restore`` names a restoration filter to run after the base decode (:func:`restoring_codec`)."""
    if isinstance(codec, Codec):
        return codec
    if restore is not None:
        if codec is not None:
            raise IcmError("name the codec or the restoration filter, not both (BASE+FILTER names both)")
        found = restoring_codec(data, restore)
        found.require_available()
        return found
    if codec is not None:
        found = registry.get_codec(codec)
    else:
        name = sniff_codec(data)
        if name is None:
            raise BitstreamError(f"unrecognised stream: not .icm and no known image signature (pass {how_to_name})")
        found = registry.stream_codec(name, how_to_name)
    found.require_available()
    return found


def restoring_codec(data: bytes, restore: str) -> Codec:
    """The composed codec that restores ``data``'s decoded image: ``restore`` is ``BASE+FILTER`` (``jpeg+mmd``), a
    filter's short name (``mmd``: the base is the stream's format) or a filter weights file a user trained."""
    from icmkit.codecs.restored import FILTER_SEPARATOR, RestoredCodec

    base = sniff_codec(data)
    if base is None or bitstream.peek_is_icm(data):
        raise BitstreamError("--restore takes a standard codec's stream (a JPEG file, an hevc444 stream)")
    name = restore if FILTER_SEPARATOR in restore or restore.endswith(".safetensors") else f"{base}+{restore}"
    found = registry.get_codec(name)
    if not isinstance(found, RestoredCodec):
        raise IcmError(f"{restore}: not a restoration filter (filters: {', '.join(restoration_filters())})")
    if found.base.name != base:
        raise IcmError(f"{found.name} restores {found.base.name} streams; this stream is {base}")
    return found


def restoration_filters(base: str | None = None) -> list[str]:
    """The registered composed codecs, ``BASE+FILTER`` (those over ``base`` only, when given)."""
    from icmkit.codecs.restored import RestoredCodec

    return [
        c.name for c in registry.list_codecs() if isinstance(c, RestoredCodec) and (base is None or c.base.name == base)
    ]


def standard_stream_info(data: bytes) -> dict | None:
    """What ``icm info`` shows of a standard codec's stream (a JPEG file, an hevc444 stream): its format, the codec
    that decodes it, its size when the header says it, and the quality a restoration filter reads from it with the
    filters that restore it. None for ``.icm`` data and data no codec signature matches."""
    from icmkit.codecs.restored import STREAM_QUALITY
    from icmkit.codecs.sniff import describe

    name = sniff_codec(data)
    if name is None or bitstream.peek_is_icm(data):
        return None
    fields: dict = {"format": describe(data), "codec": name}
    size = _declared_size(name, data)
    if size is not None:
        fields.update({"width": size[0], "height": size[1]})
    fields["bytes"] = len(data)
    if size is not None:
        fields["bpp"] = 8 * len(data) / (size[0] * size[1])
    if name in STREAM_QUALITY:  # the condition a filter reads; a hostile header fails here with one clean error
        fields["quality"] = STREAM_QUALITY[name](data, name)
        fields["restore_with"] = restoration_filters(name)
    return fields


def _declared_size(name: str, data: bytes) -> tuple[int, int] | None:
    """(width, height) from a stream's header without decoding it; None when the header does not say it here."""
    import io

    from PIL import Image, UnidentifiedImageError

    from icmkit.codecs.anchors import _rawstream

    if data[: len(_rawstream.MAGIC)] == _rawstream.MAGIC:  # icmkit's raw HEVC / VVC container
        header, _, _ = _rawstream.read_header(data, name)
        return header.width, header.height
    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only
            return image.size
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None
