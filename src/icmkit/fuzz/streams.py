"""Stream surfaces of the fuzzer: mutated streams into every codec's decode path.

Each case is one byte string handed to one *stream target* — a registered codec (``icmkit.decompress(data,
codec=NAME)``), ``sniff`` (``icmkit.decompress(data)``: the codec read from the bytes) or ``features``
(:func:`icmkit.feature_io.load_features` on a ``.safetensors`` file). The bytes are a small valid stream of that
target (the seed corpus, coded at start-up from 64×64 and 96×64 crops of the bundled photos) changed by one seeded
mutation: bit flips, byte edits, byte runs, truncations, extensions, insertions, deletions, splices with another
stream, random files, and — for ``.icm`` streams and the raw HEVC/VVC header — edits of header fields (dimensions,
padding, codec name, kind, quality, digest, ``extra``, stream count and lengths, overlong varints) with the CRC-32
recomputed.
"""

from __future__ import annotations

import random
import struct
import zlib

EXTRA_TARGETS = ("sniff", "features")
CROPS = (("chelsea.png", 64, 64, 0, 40), ("coffee.png", 96, 64, 120, 200))  # name, width, height, top, left


# -- seed corpus --------------------------------------------------------------------------------------
def stream_targets() -> list[str]:
    """Every available registered codec, then ``sniff`` and ``features``."""
    from icmkit.codecs import list_codecs

    return [c.name for c in list_codecs() if c.availability().ok] + list(EXTRA_TARGETS)


def _crops():
    import numpy as np
    from PIL import Image

    from icmkit.data import sample_path

    out = []
    for name, width, height, top, left in CROPS:
        image = np.asarray(Image.open(sample_path(name)).convert("RGB"))
        out.append(np.ascontiguousarray(image[top : top + height, left : left + width]))
    return out


def _qualities(codec) -> list[int]:
    grid = list(codec.quality.grid)
    return sorted({grid[0], grid[-1]}) if codec.name.startswith("icm-") else [grid[len(grid) // 2]]


def build_corpus(targets: list[str]) -> dict[str, list[bytes]]:
    """Small valid streams of every codec target (and a features file, if ``features`` is a target)."""
    import icmkit
    from icmkit.codecs import get_codec
    from icmkit.decoded import CodecKind
    from icmkit.feature_io import features_to_bytes

    images = _crops()
    corpus: dict[str, list[bytes]] = {}
    for name in targets:
        if name in EXTRA_TARGETS:
            continue
        codec = get_codec(name)
        corpus[name] = [codec.encode(image, q) for image in images for q in _qualities(codec)]
    if "features" in targets:
        feature_codecs = [c for c in icmkit.list_codecs() if c.kind == CodecKind.FEATURE and c.availability().ok]
        if feature_codecs:
            codec = feature_codecs[0]
            streams = corpus.get(codec.name) or [codec.encode(images[0], None)]
            corpus["features"] = [features_to_bytes(codec.decode(s)) for s in streams[:2]]
    if "sniff" in targets:
        corpus["sniff"] = [s for name, streams in corpus.items() if name != "features" for s in streams]
        if not corpus["sniff"]:  # no codec among the targets: the streams of every available codec
            codecs = [c for c in icmkit.list_codecs() if c.availability().ok and not c.name.startswith("compressai")]
            corpus["sniff"] = [c.encode(images[0], c.quality.default) for c in codecs]
    return corpus


# -- mutations ------------------------------------------------------------------------------------------
ICM_MAGIC = b"\x89ICM"
RAW_MAGIC = b"icR"


def _uv(value: int, overlong: bool = False) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        if value or overlong:
            out.append(byte | 0x80)
            if not value:
                out.append(0)
                return bytes(out)
        else:
            out.append(byte)
            return bytes(out)


def _with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def _hostile_int(rng: random.Random, value: int) -> int:
    return rng.choice(
        [
            0,
            1,
            2,
            7,
            8,
            63,
            64,
            65,
            4096,
            4097,
            1 << 20,
            (1 << 35) - 1,
            value + 1,
            max(value - 1, 0),
            value * 2,
            value * 64,
            rng.randrange(1 << rng.choice((4, 8, 16, 28))),
        ]
    )


def _icm_fields(data: bytes) -> dict:
    from icmkit import bitstream

    header, streams = bitstream.unpack(data)
    return {
        "version": 1,
        "kind": bitstream.KINDS.index(header.kind),
        "codec": header.codec.encode(),
        "quality": header.quality,
        "digest": header.digest,
        "width": header.width,
        "height": header.height,
        "channels": header.channels,
        "pad_bottom": header.pad_bottom,
        "pad_right": header.pad_right,
        "extra": header.extra,
        "streams": list(streams),
        "lengths": None,
        "overlong": (),
    }


def _icm_pack(f: dict) -> bytes:
    """An .icm writer without pack()'s checks, so that fields can hold what no encoder writes."""
    uv = lambda key: _uv(f[key], key in f["overlong"])  # noqa: E731
    lengths = f["lengths"] if f["lengths"] is not None else [len(s) for s in f["streams"]]
    body = ICM_MAGIC + bytes([f["version"] & 255, f["kind"] & 255, len(f["codec"]) & 255]) + f["codec"]
    body += bytes([f["quality"] & 255]) + f["digest"] + uv("width") + uv("height") + bytes([f["channels"] & 255])
    body += uv("pad_bottom") + uv("pad_right") + _uv(len(f["extra"])) + f["extra"]
    body += bytes([len(lengths) & 255]) + b"".join(_uv(n) for n in lengths) + b"".join(f["streams"])
    return _with_crc(body)


def _edit_extra(rng: random.Random, extra: bytes) -> bytes:
    from icmkit import bitstream

    try:
        items = bitstream.unpack_extra(extra)
    except Exception:  # noqa: BLE001 - not a key/value field: edit its bytes
        items = {}
    choice = rng.randrange(4)
    if choice == 0 or not items:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(24)))
    key = rng.choice(sorted(items))
    if choice == 1:
        del items[key]
    elif choice == 2 and key == "f":
        items[key] = rng.choice(
            [b"40x8x8", b"40x0x8", b"1x1x1", b"40x100000x8", b"40x8", b"x", b"40x8x8x8", b"99999999999x1x1", b"\xff"]
        )
    else:
        items[key] = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 20)))
    return bitstream.pack_extra(items)


def _weights_paths() -> list[bytes]:
    """Codec names that are paths of weights files on this machine (a header must never resolve one)."""
    from icmkit.zoo import ZOO_DIR

    shipped = sorted((ZOO_DIR / "weights").glob("*.safetensors"))[:1]
    return [str(p).encode() for p in shipped] + [b"w/x.safetensors", b"../../etc/passwd.safetensors"]


def _mutate_icm_header(rng: random.Random, data: bytes, corpus: dict[str, list[bytes]]) -> tuple[bytes, str]:
    f = _icm_fields(data)
    names = [n.encode() for n in corpus if n not in EXTRA_TARGETS]
    edits = []
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        key = rng.choice(
            [
                "width",
                "height",
                "pad_bottom",
                "pad_right",
                "quality",
                "codec",
                "kind",
                "version",
                "digest",
                "channels",
                "extra",
                "streams",
                "lengths",
                "overlong",
                "dims",
            ]
        )
        edits.append(key)
        if key in ("width", "height", "pad_bottom", "pad_right"):
            f[key] = _hostile_int(rng, f[key])
        elif key == "dims":  # a larger picture that still fits the model's stride
            scale = rng.choice((2, 4, 8, 16, 64))
            f["width"], f["height"] = f["width"] * scale, f["height"] * rng.choice((1, scale))
        elif key == "quality":
            f[key] = rng.choice([0, 1, 2, 3, 4, 5, 6, 7, 255, rng.randrange(256)])
        elif key == "codec":
            f[key] = rng.choice(
                names + [b"", b"icm-", b"\xff\xfe", b"jpeg", b"x" * 255, b"icm-custom", *_weights_paths()]
            )
        elif key in ("kind", "version", "channels"):
            f[key] = rng.randrange(256) if rng.random() < 0.3 else rng.choice((0, 1, 2, 3))
        elif key == "digest":
            digest = bytearray(f["digest"])
            digest[rng.randrange(len(digest))] ^= 1 << rng.randrange(8)
            f[key] = bytes(digest)
        elif key == "extra":
            f[key] = _edit_extra(rng, f["extra"])
        elif key == "streams":
            streams = f["streams"] or [b""]
            op = rng.randrange(5)
            if op == 0:
                streams = streams[:-1]
            elif op == 1:
                streams = streams + [streams[rng.randrange(len(streams))]]
            elif op == 2:
                streams = streams[::-1]
            elif op == 3:
                streams = [b""] * len(streams)
            else:
                streams = [streams[0]] * rng.choice((0, 17, 255))
            f["streams"] = streams
        elif key == "lengths":  # move the boundaries between streams, or break their sum
            lengths = [len(s) for s in f["streams"]] or [0]
            i = rng.randrange(len(lengths))
            delta = rng.choice((-5, -1, 1, 4, 1000))
            lengths[i] = max(lengths[i] + delta, 0)
            if rng.random() < 0.7 and len(lengths) > 1:
                j = (i + 1) % len(lengths)
                lengths[j] = max(lengths[j] - delta, 0)
                payload = b"".join(f["streams"])
                if sum(lengths) == len(payload):
                    cuts = [0]
                    for n in lengths:
                        cuts.append(cuts[-1] + n)
                    f["streams"] = [payload[a:b] for a, b in zip(cuts, cuts[1:])]
                    lengths = None
            f["lengths"] = lengths
        else:
            f["overlong"] = (rng.choice(["width", "height", "pad_bottom", "pad_right"]),)
    return _icm_pack(f), "header:" + "+".join(edits)


def _mutate_raw_header(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    from icmkit.varint import decode_uv

    pos, fields = 4, []
    for _ in range(3):
        value, pos = decode_uv(data, pos, 4)
        fields.append(value)
    stream = data[pos:]
    key = rng.randrange(4)
    if key == 3:
        fmt = bytes([rng.randrange(256)])
    else:
        fmt = data[3:4]
        fields[key] = _hostile_int(rng, fields[key])
    return data[:3] + fmt + b"".join(
        _uv(v) for v in fields
    ) + stream, f"raw-header:{'width height length format'.split()[key]}"


def _payload_start(data: bytes) -> int:
    if data[:4] == ICM_MAGIC:
        from icmkit import bitstream

        header, _ = bitstream.unpack(data)
        return len(data) - 4 - sum(header.stream_lengths)
    return 0


def mutate(corpus: dict[str, list[bytes]], target: str, seed: int, index: int) -> tuple[bytes, str]:
    """Case ``index`` of run ``seed``: the bytes and a short description of the mutation."""
    rng = random.Random(f"{seed}:{index}")
    base = rng.choice(corpus[target])
    icm = base[:4] == ICM_MAGIC
    kinds = ["flip", "bytes", "run", "truncate", "extend", "insert", "delete", "splice", "random", "none"]
    weights = [16, 16, 8, 6, 4, 4, 4, 4, 4, 1]
    if icm:
        kinds.append("header")
        weights.append(30)
    elif base[:3] == RAW_MAGIC:
        kinds.append("raw-header")
        weights.append(10)
    kind = rng.choices(kinds, weights)[0]
    data = bytearray(base)
    if kind == "header":
        return _mutate_icm_header(rng, base, corpus)
    if kind == "raw-header":
        return _mutate_raw_header(rng, base)
    # Payload edits of an .icm stream mostly keep a valid CRC, so that they reach the entropy decoder.
    low = _payload_start(base) if icm and rng.random() < 0.8 else 0
    high = len(data) - 4 if icm else len(data)
    pick = lambda: rng.randrange(low, max(high, low + 1))  # noqa: E731
    if kind == "flip":
        for _ in range(rng.choice((1, 1, 2, 4, 8))):
            data[pick()] ^= 1 << rng.randrange(8)
    elif kind == "bytes":
        for _ in range(rng.choice((1, 2, 4, 8))):
            data[pick()] = rng.randrange(256)
    elif kind == "run":
        start, length = pick(), rng.choice((2, 4, 16, 64))
        value = rng.choice((0, 255, rng.randrange(256)))
        data[start : start + length] = bytes([value]) * len(data[start : start + length])
    elif kind == "truncate":
        del data[rng.randrange(len(data)) :]
    elif kind == "extend":
        data += bytes(rng.randrange(256) for _ in range(rng.choice((1, 4, 64, 1024))))
    elif kind == "insert":
        at = pick()
        data[at:at] = bytes(rng.randrange(256) for _ in range(rng.choice((1, 4, 16))))
    elif kind == "delete":
        at = pick()
        del data[at : at + rng.choice((1, 4, 16))]
    elif kind == "splice":
        other = rng.choice(rng.choice(list(corpus.values())))
        data = data[: rng.randrange(len(data) + 1)] + other[rng.randrange(len(other) + 1) :]
    elif kind == "random":
        prefix = base[: rng.choice((0, 2, 3, 4, 8, 12, 16))]
        data = bytearray(prefix + bytes(rng.randrange(256) for _ in range(rng.choice((0, 1, 16, 200, 2000)))))
    crc = icm and kind not in ("random", "splice", "none") and len(data) > 4 and rng.random() < 0.9
    if crc:
        data = (
            bytearray(_with_crc(bytes(data[:-4])))
            if kind in ("flip", "bytes", "run", "insert", "delete")
            else bytearray(_with_crc(bytes(data)))
        )
    return bytes(data), kind + ("+crc" if crc else "")


# -- running one case -------------------------------------------------------------------------------
def _declared_size(data: bytes):
    """(height, width) a stream's own header declares, where icmkit can read it without decoding."""
    from icmkit import bitstream
    from icmkit.codecs.anchors import _rawstream

    if data[:4] == ICM_MAGIC:
        header, _ = bitstream.unpack(data)
        return header.height, header.width
    if data[:3] == RAW_MAGIC:
        kind = _rawstream.StreamKind(data[3] >> 4)
        header, _ = _rawstream.unpack(data, kind, (data[3] & 15) + 8, "fuzz")
        return header.height, header.width
    return None


def check_output(target: str, data: bytes, out) -> str | None:
    """Why a decoded output breaks the contract (None when it keeps it)."""
    import numpy as np

    from icmkit.decoded import FEATURES, FeatureMaps
    from icmkit.limits import max_pixels

    if target == "features":
        return None if isinstance(out, FeatureMaps) else f"load_features returned {type(out).__name__}"
    declared = _declared_size(data)
    if isinstance(out, FeatureMaps):
        tensor = out.tensors[FEATURES]
        stride = out.strides[FEATURES]
        height, width = out.image_size
        if out.meta.get("input_size") is not None:  # the classifier geometry: the map of the classifier's crop
            rows, cols = (-(-side // stride) for side in out.meta["input_size"])
        elif out.meta.get("resized") is not None:  # the detection geometry: the map of the 32-padded resize
            rows, cols = (-(-(-(-side // 32) * 32) // stride) for side in out.meta["resized"])
        else:
            rows, cols = -(-height // stride), -(-width // stride)
        expected = (1, tensor.shape[1], rows, cols)
        if tuple(tensor.shape) != expected or str(tensor.dtype) != "torch.float32":
            return f"features {tuple(tensor.shape)} {tensor.dtype}, expected {expected} float32"
        return None if declared in (None, (height, width)) else f"image size {out.image_size}, header {declared}"
    if not isinstance(out, np.ndarray) or out.dtype != np.uint8 or out.ndim != 3 or out.shape[2] != 3:
        return f"decoded {type(out).__name__} {getattr(out, 'shape', '')} {getattr(out, 'dtype', '')}"
    if declared is not None and out.shape[:2] != declared:
        return f"decoded {out.shape[:2]}, header declares {declared}"
    if out.shape[0] * out.shape[1] > max_pixels() or min(out.shape[:2]) < 1:
        return f"decoded {out.shape[:2]} beyond the pixel limit"
    return None


def _is_memory(exc: BaseException) -> bool:
    while exc is not None:
        if isinstance(exc, MemoryError) or "can't allocate memory" in str(exc) or "not enough memory" in str(exc):
            return True
        # A context re-raised "from None" is a failure the code expected and mapped on purpose.
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return False


def decode(target: str, data: bytes):
    import icmkit
    from icmkit.feature_io import load_features

    if target == "features":
        return load_features(data)
    return icmkit.decompress(data, codec=None if target == "sniff" else target)
