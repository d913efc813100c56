"""Fuzz every decoder: mutated streams into every codec's decode path, outcomes counted.

Each case is one byte string handed to one *target* — a registered codec (``icmkit.decompress(data,
codec=NAME)``), ``sniff`` (``icmkit.decompress(data)``: the codec read from the bytes) or ``features``
(:func:`icmkit.feature_io.load_features` on a ``.safetensors`` file). The bytes are a small valid stream
of that target (the seed corpus, coded at start-up from 64×64 and 96×64 crops of the bundled photos)
changed by one seeded mutation: bit flips, byte edits, byte runs, truncations, extensions, insertions,
deletions, splices with another stream, random files, and — for ``.icm`` streams and the raw HEVC/VVC
header — edits of header fields (dimensions, padding, codec name, kind, quality, digest, ``extra``,
stream count and lengths, overlong varints) with the CRC-32 recomputed.

Outcomes: ``decoded`` (an output of the declared size), ``clean`` (one :class:`~icmkit.errors.IcmError`),
``uncaught`` (any other exception, or an output of the wrong size), ``hang`` (over ``--timeout``),
``memory`` (MemoryError or an allocator failure, including one a codec turned into a clean error) and
``died`` (the worker process was killed). Cases run in long-lived worker processes (models load once);
each worker has one torch thread, ``ICM_MAX_PIXELS=--max-pixels`` and an address-space limit
(``RLIMIT_AS``) of what it has mapped after start-up plus ``--memory-mb``. A case is reproducible from
``--seed``, ``--codecs`` and its index::

    python benchmarks/fuzz.py [--cases 100000] [--seed 0] [--codecs icm-mse,jpeg,...] [--workers 2] [--json out.json]
    python benchmarks/fuzz.py --seed 0 --case 1234 [--dump case.bin]    # rerun one case here, with its traceback
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import random
import resource
import select
import struct
import subprocess
import sys
import time
import traceback
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field

OUTCOMES = ("decoded", "clean", "uncaught", "hang", "memory", "died")
FAILURES = ("uncaught", "hang", "memory", "died")
EXTRA_TARGETS = ("sniff", "features")
CROPS = (("chelsea.png", 64, 64, 0, 40), ("coffee.png", 96, 64, 120, 200))  # name, width, height, top, left


# -- seed corpus --------------------------------------------------------------------------------------
def default_targets() -> list[str]:
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
    from icmkit.codecs.base import CodecKind
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
            f[key] = rng.choice(names + [b"", b"icm-", b"\xff\xfe", b"jpeg", b"x" * 255, b"icm-custom"])
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


def _recipe(corpus, targets: list[str], seed: int, index: int) -> str:
    try:
        return mutate(corpus, target_of(targets, index), seed, index)[1]
    except Exception as exc:  # noqa: BLE001 - a fuzzer bug must not end the run; it shows in the report
        return f"mutation failed: {exc!r}"


def target_of(targets: list[str], index: int) -> str:
    return targets[index % len(targets)]


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

    from icmkit.codecs.base import FEATURES, FeatureMaps
    from icmkit.limits import max_pixels

    if target == "features":
        return None if isinstance(out, FeatureMaps) else f"load_features returned {type(out).__name__}"
    declared = _declared_size(data)
    if isinstance(out, FeatureMaps):
        tensor = out.tensors[FEATURES]
        stride = out.strides[FEATURES]
        height, width = out.image_size
        expected = (1, tensor.shape[1], -(-height // stride), -(-width // stride))
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


def run_case(corpus, targets, seed: int, index: int) -> dict:
    from icmkit.errors import IcmError

    target = target_of(targets, index)
    data, recipe = mutate(corpus, target, seed, index)
    start = time.perf_counter()
    detail = ""
    try:
        out = decode(target, data)
        problem = check_output(target, data, out)
        outcome, detail = ("uncaught", f"WrongOutput: {problem}") if problem else ("decoded", "")
    except IcmError as exc:
        outcome = "memory" if _is_memory(exc) else "clean"
        detail = f"{type(exc).__name__}: {exc}" if outcome == "memory" else ""
    except Exception as exc:  # noqa: BLE001 - counting these is the point
        outcome = "memory" if _is_memory(exc) else "uncaught"
        frames = traceback.extract_tb(exc.__traceback__)
        where = f"{os.path.basename(frames[-1].filename)}:{frames[-1].lineno}" if frames else "?"
        detail = f"{type(exc).__name__} at {where}: {' '.join(str(exc).split())[:200]}"
    seconds = time.perf_counter() - start
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "index": index,
        "target": target,
        "recipe": recipe,
        "outcome": outcome,
        "detail": detail,
        "seconds": seconds,
        "rss_mb": rss_mb,
    }


# -- worker process -----------------------------------------------------------------------------------
def _send(stream, message) -> None:
    blob = pickle.dumps(message)
    stream.write(struct.pack("<Q", len(blob)) + blob)
    stream.flush()


def _read_exact(stream, count: int) -> bytes:
    # Unbuffered reads (os.read on the descriptor): a buffered reader could swallow a second message
    # that select() then never reports.
    chunks, fd = [], stream.fileno()
    while count:
        chunk = os.read(fd, min(count, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


def _receive(stream):
    (length,) = struct.unpack("<Q", _read_exact(stream, 8))
    return pickle.loads(_read_exact(stream, length))


def _limit_memory(extra_mb: int) -> int:
    """RLIMIT_AS = what is mapped now + ``extra_mb``; returns the limit in MiB."""
    with open("/proc/self/statm") as statm:
        mapped = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    limit = mapped + extra_mb * (1 << 20)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return limit >> 20


def _warm(corpus, targets) -> None:
    """Load every model a case may touch (all qualities), so that loading never counts as a case."""
    from icmkit.codecs import get_codec

    for name in targets:
        if name in EXTRA_TARGETS:
            continue
        codec = get_codec(name)
        for quality in getattr(codec.quality, "allowed", None) or codec.quality.grid:
            try:
                codec.model(quality)
            except Exception:  # noqa: BLE001 - a missing rate point shows up as a case outcome
                pass
        for stream in corpus.get(name, [])[:1]:
            decode(name, stream)


def worker_main() -> None:
    """Serve cases over stdin/stdout: ("init", corpus, targets, seed, memory_mb) then ("run", [indices])."""
    import torch

    torch.set_num_threads(1)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing a library prints may corrupt the channel
    corpus = targets = seed = None
    while True:
        try:
            message = _receive(stdin)
        except EOFError:
            return
        if message[0] == "corpus":
            _send(stdout, build_corpus(message[1]))
        elif message[0] == "init":
            _, corpus, targets, seed, memory_mb = message
            _warm(corpus, targets)
            _send(stdout, {"limit_mb": _limit_memory(memory_mb) if memory_mb else None})
        elif message[0] == "run":
            for index in message[1]:
                _send(stdout, run_case(corpus, targets, seed, index))


class Worker:
    def __init__(self, env: dict):
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            stderr=None if os.environ.get("FUZZ_DEBUG") else subprocess.DEVNULL,
        )
        self.pending: list[int] = []
        self.started = time.monotonic()  # when the oldest pending case began

    def ask(self, message, timeout: float | None = None):
        _send(self.proc.stdin, message)
        return self.read(timeout)

    def read(self, timeout: float | None):
        if timeout is not None:
            ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
            if not ready:
                raise TimeoutError
        return _receive(self.proc.stdout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # only ever our own child, by its handle
        self.proc.wait()


# -- the run -----------------------------------------------------------------------------------------
@dataclass
class Summary:
    cases: int
    seed: int
    targets: list[str]
    max_pixels: int
    memory_mb: int
    timeout_s: float
    outcomes: Counter = field(default_factory=Counter)
    per_target: dict = field(default_factory=lambda: defaultdict(Counter))
    failures: list = field(default_factory=list)
    worst: dict = field(default_factory=dict)
    peak_rss_mb: float = 0.0
    address_space_limit_mb: int | None = None
    corpus_s: float = 0.0
    wall_s: float = 0.0

    def add(self, result: dict) -> None:
        self.outcomes[result["outcome"]] += 1
        self.per_target[result["target"]][result["outcome"]] += 1
        self.peak_rss_mb = max(self.peak_rss_mb, result.get("rss_mb", 0.0))
        if result["seconds"] > self.worst.get("seconds", -1):
            self.worst = {k: result[k] for k in ("index", "target", "recipe", "seconds")}
        if result["outcome"] in FAILURES:
            self.failures.append({k: result[k] for k in ("index", "target", "recipe", "outcome", "detail")})

    def as_dict(self) -> dict:
        return {
            "cases": self.cases,
            "seed": self.seed,
            "targets": self.targets,
            "max_pixels": self.max_pixels,
            "memory_mb": self.memory_mb,
            "timeout_s": self.timeout_s,
            "outcomes": {k: self.outcomes.get(k, 0) for k in OUTCOMES},
            "per_target": {t: {k: self.per_target[t].get(k, 0) for k in OUTCOMES} for t in self.targets},
            "failures": self.failures,
            "worst_case": self.worst,
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "address_space_limit_mb": self.address_space_limit_mb,
            "corpus_s": round(self.corpus_s, 2),
            "wall_s": round(self.wall_s, 2),
        }


def reproduce_command(seed: int, targets: list[str], index: int) -> str:
    return f"python benchmarks/fuzz.py --seed {seed} --codecs {','.join(targets)} --case {index}"


def run_fuzz(
    cases: int = 100_000,
    seed: int = 0,
    targets: list[str] | None = None,
    workers: int = 2,
    timeout: float = 10.0,
    max_pixels: int = 1 << 18,
    memory_mb: int = 2048,
    batch: int = 32,
    progress: bool = False,
    log=None,
) -> Summary:
    """Run ``cases`` seeded cases over ``targets`` in ``workers`` processes; return the counts."""
    targets = targets or default_targets()
    env = {**os.environ, "ICM_MAX_PIXELS": str(max_pixels), "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    summary = Summary(cases, seed, targets, max_pixels, memory_mb, timeout)
    start = time.monotonic()
    first = Worker(env)
    corpus = first.ask(("corpus", targets))
    summary.corpus_s = time.monotonic() - start

    def started(worker: Worker | None = None) -> Worker:
        worker = worker or Worker(env)
        reply = worker.ask(("init", corpus, targets, seed, memory_mb))
        summary.address_space_limit_mb = reply["limit_mb"]
        return worker

    pool = [started(first)] + [started() for _ in range(workers - 1)]
    todo = list(range(cases))[::-1]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cases, unit="case", smoothing=0.05)

    def feed(worker: Worker) -> None:
        chunk = [todo.pop() for _ in range(min(batch, len(todo)))]
        if chunk:
            worker.pending = chunk
            worker.started = time.monotonic()
            _send(worker.proc.stdin, ("run", chunk))

    def record(result: dict) -> None:
        summary.add(result)
        if bar is not None:
            bar.update(1)
        if result["outcome"] in FAILURES and log is not None:
            log(
                f"{result['outcome']}: {result['target']} case {result['index']} ({result['recipe']}): "
                f"{result['detail']}\n  reproduce: {reproduce_command(seed, targets, result['index'])}"
            )

    for worker in pool:
        feed(worker)
    while any(w.pending for w in pool):
        busy = [w for w in pool if w.pending]
        ready, _, _ = select.select([w.proc.stdout for w in busy], [], [], 0.5)
        now = time.monotonic()
        for i, worker in enumerate(pool):
            if not worker.pending:
                continue
            index = worker.pending[0]
            if worker.proc.stdout in ready:
                try:
                    result = _receive(worker.proc.stdout)
                except EOFError:
                    code = worker.proc.wait()
                    result = {
                        "index": index,
                        "target": target_of(targets, index),
                        "outcome": "died",
                        "recipe": _recipe(corpus, targets, seed, index),
                        "detail": f"worker exited with status {code}",
                        "seconds": now - worker.started,
                    }
                    record(result)
                    pool[i] = started()
                    pool[i].pending = worker.pending[1:]
                    if pool[i].pending:
                        _send(pool[i].proc.stdin, ("run", pool[i].pending))
                    pool[i].started = time.monotonic()
                    continue
                record(result)
                worker.pending.pop(0)
                worker.started = time.monotonic()
            elif now - worker.started > timeout:
                worker.kill()
                record(
                    {
                        "index": index,
                        "target": target_of(targets, index),
                        "outcome": "hang",
                        "recipe": _recipe(corpus, targets, seed, index),
                        "detail": f"no result after {timeout:g} s",
                        "seconds": now - worker.started,
                    }
                )
                rest = worker.pending[1:]
                pool[i] = started()
                pool[i].pending = rest
                if rest:
                    _send(pool[i].proc.stdin, ("run", rest))
                pool[i].started = time.monotonic()
                continue
            if not worker.pending:
                feed(worker)
    for worker in pool:
        worker.proc.stdin.close()
        worker.proc.wait()
    if bar is not None:
        bar.close()
    summary.wall_s = time.monotonic() - start
    return summary


def print_summary(summary: Summary) -> None:
    d = summary.as_dict()
    width = max(len(t) for t in d["per_target"]) if d["per_target"] else 8
    print(
        f"\n{d['cases']:,} cases, seed {d['seed']}, wall {d['wall_s']:.1f} s (corpus {d['corpus_s']:.1f} s); "
        f"limits: {d['timeout_s']:g} s per case, ICM_MAX_PIXELS={d['max_pixels']:,}, "
        f"address space {d['address_space_limit_mb']} MiB per worker"
    )
    print(f"{'target':<{width}}  " + "  ".join(f"{k:>8}" for k in OUTCOMES))
    for target, counts in d["per_target"].items():
        print(f"{target:<{width}}  " + "  ".join(f"{counts[k]:>8,}" for k in OUTCOMES))
    print(f"{'total':<{width}}  " + "  ".join(f"{d['outcomes'][k]:>8,}" for k in OUTCOMES))
    worst = d["worst_case"]
    if worst:
        print(
            f"worst time {worst['seconds'] * 1000:.0f} ms ({worst['target']} case {worst['index']}, "
            f"{worst['recipe']}); peak RSS {d['peak_rss_mb']:.0f} MiB per worker"
        )


def reproduce(seed: int, targets: list[str], index: int, dump: str | None) -> None:
    """Rerun one case in this process and show its traceback."""
    import torch

    torch.set_num_threads(1)
    corpus = build_corpus(targets)
    target = target_of(targets, index)
    data, recipe = mutate(corpus, target, seed, index)
    print(f"case {index}: target {target}, mutation {recipe}, {len(data)} bytes")
    if dump:
        with open(dump, "wb") as handle:
            handle.write(data)
    out = decode(target, data)  # let any exception show its traceback
    print("decoded:", check_output(target, data, out) or "output of the declared size")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("--cases", type=int, default=100_000, help="number of cases (default 100000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--codecs", help="comma-separated targets (codec names, sniff, features); default: all")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per case before it counts as a hang")
    parser.add_argument("--max-pixels", type=int, default=1 << 18, help="ICM_MAX_PIXELS in the workers")
    parser.add_argument(
        "--memory-mb",
        type=int,
        default=2048,
        help="address space a worker may add after start-up (RLIMIT_AS); 0: no limit",
    )
    parser.add_argument("--json", help="write the summary here")
    parser.add_argument("--case", type=int, help="rerun only this case, here, with its traceback")
    parser.add_argument("--dump", help="with --case: write the case's bytes to this file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main()
        return 0
    targets = args.codecs.split(",") if args.codecs else None
    if args.case is not None:
        os.environ["ICM_MAX_PIXELS"] = str(args.max_pixels)
        reproduce(args.seed, targets or default_targets(), args.case, args.dump)
        return 0
    summary = run_fuzz(
        args.cases,
        args.seed,
        targets,
        args.workers,
        args.timeout,
        args.max_pixels,
        args.memory_mb,
        progress=True,
        log=lambda line: print(line, file=sys.stderr),
    )
    print_summary(summary)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(summary.as_dict(), handle, indent=1)
    return 1 if any(summary.outcomes.get(k) for k in FAILURES) else 0


if __name__ == "__main__":
    sys.exit(main())
