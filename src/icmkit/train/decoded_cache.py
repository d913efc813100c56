"""A cache of decoded crops: random crops of training images, each coded and decoded by a standard codec at a few
qualities of the codec's training grid — what a receiver-side restoration filter trains on (issue 21).

Why a cache: HEVC-444 at the anchor's settings (x265 veryslow) takes 0.2–0.7 s per 256² crop on this CPU; coding in
the training loop would cost more than the filter's own steps. Built once (resumable, over a process pool like the
bench's), it is read back at memory-mapped speed.

Layout of a cache folder (outside the repository; absolute paths inside are fine)::

    manifest.json                      codec, library versions, quality grid, crop, K, Q, seed, resize, folders
    shards/<folder index>/<relative path of the image>.safetensors

One shard per source image (safetensors: uint8, lossless, memory-mappable, one library already used for weights):
``original`` (K, S, S, 3), ``decoded`` (K, Q, S, S, 3), ``quality`` (K, Q) float64 (the codec's own knob value),
``bytes`` (K, Q) int64 (the stream's length: bpp = 8 · bytes / S²), ``offset`` (K, 2) int64 (top, left of each
crop in the resized, padded image). A shard is written whole or not at all (:func:`icmkit.fileio.atomic_write`), so a
killed build leaves only complete shards and a rerun builds the missing ones.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from icmkit.errors import IcmError
from icmkit.fileio import atomic_write

FORMAT = "icmkit-decoded-crops/1"
MANIFEST_NAME = "manifest.json"
SHARDS = "shards"
SHARD_SUFFIX = ".safetensors"
LOCK_NAME = ".build.lock"

# Training quality grids, every integer of a range (qualities are drawn per crop from it, stratified):
# - hevc444 (BPG q, x265 QP q + 1): 12…50. The bench grid spans 12…47, and a filter conditioned on q must have seen
#   every q between its points too (rate control, `--target-bytes`, picks any q); 48…50, the knob's top, is what
#   small byte budgets reach and where the artefacts are worst (measured on ImageNet crops of this cache: 22.8 dB,
#   0.09 bpp at q 48–50). Below 12 there is little left to restore (q 12–15: 47.3 dB at 5.5 bpp); a filter should
#   clamp its condition to 12 there.
# - jpeg (libjpeg quality): 5…95, the bench grid's range (95 is the knob's top). Below 5 the blocks are flat means;
#   a filter should clamp its condition to 5 there.
# Another codec: every integer between the ends of its bench grid (its default evaluation range).
TRAINING_GRIDS: dict[str, tuple[int, ...]] = {
    "hevc444": tuple(range(12, 51)),
    "jpeg": tuple(range(5, 96)),
}


class CacheError(IcmError):
    """A cache that cannot be built or read as asked (a mismatched rerun, a folder in use, a bad setting)."""


def training_grid(codec_name: str) -> tuple:
    """The qualities a cache for ``codec_name`` draws from (see :data:`TRAINING_GRIDS`)."""
    if codec_name in TRAINING_GRIDS:
        return TRAINING_GRIDS[codec_name]
    from icmkit.codecs.registry import get_codec

    spec = get_codec(codec_name).quality
    if spec.continuous or spec.allowed is not None:
        return tuple(sorted(spec.allowed or spec.grid))
    return tuple(range(int(min(spec.grid)), int(max(spec.grid)) + 1))


@dataclass(frozen=True)
class CacheSpec:
    """What a cache holds. Two builds with equal specs (and equal library versions) write identical shards."""

    codec: str
    folders: tuple[str, ...]  # resolved absolute paths, in order (a shard's folder index refers to this order)
    crop: int = 256
    crops: int = 4  # K random crops per image
    qualities: int = 3  # Q qualities per crop, one from each of Q equal slices of the grid
    seed: int = 0
    resize: int = 0  # > 0: scale each image so its shorter side is this (bicubic) before cropping, as RandomCrops
    grid: tuple = ()  # empty: training_grid(codec)

    def resolved(self) -> CacheSpec:
        grid = tuple(self.grid) or training_grid(self.codec)
        folders = tuple(str(Path(folder).expanduser().resolve()) for folder in self.folders)
        return CacheSpec(self.codec, folders, self.crop, self.crops, self.qualities, self.seed, self.resize, grid)

    def check(self) -> None:
        if self.crop < 1 or self.crops < 1 or self.qualities < 1 or self.resize < 0:
            raise CacheError("crop, crops and qualities must be positive and resize not negative")
        if self.qualities > len(self.grid):
            raise CacheError(f"{self.qualities} qualities per crop, but the grid has {len(self.grid)} values")
        if not self.folders:
            raise CacheError("no training folders given")


@dataclass(frozen=True)
class Source:
    """One training image: its folder's index in the spec and its path inside that folder (POSIX)."""

    folder: int
    relative: str

    @property
    def key(self) -> str:
        return f"{self.folder}/{self.relative}"

    def path(self, spec: CacheSpec) -> Path:
        return Path(spec.folders[self.folder]) / self.relative

    def shard(self, out: Path) -> Path:
        return out / SHARDS / str(self.folder) / (self.relative + SHARD_SUFFIX)


def list_sources(spec: CacheSpec) -> list[Source]:
    """Every image of the spec's folders, in a fixed order (folder, then sorted path)."""
    from icmkit.train.data import find_images

    sources = []
    for index, folder in enumerate(spec.folders):
        try:
            files = find_images([folder])
        except FileNotFoundError as exc:
            raise CacheError(str(exc)) from None
        sources.extend(Source(index, path.relative_to(folder).as_posix()) for path in files)
    return sources


# -- what made the cache ------------------------------------------------------------------------------------------
_PILLOW_FEATURES = {"jpeg": ("libjpeg_turbo", "jpg"), "webp": ("webp",), "avif": ("avif",)}


def library_versions(codec_name: str) -> dict[str, str]:
    """The libraries whose output the decoded crops are: a rerun with other versions must not mix shards."""
    import PIL
    import PIL.features

    versions = {"pillow": PIL.__version__}  # reads the training images (and resizes them)
    for feature in _PILLOW_FEATURES.get(codec_name.split("4")[0], ()):
        version = PIL.features.version(feature) if PIL.features.check(feature) else None
        if version:
            versions[feature] = str(version)
    if codec_name.startswith(("hevc", "vvc", "h264")):
        import av

        versions["pyav"] = av.__version__
        versions.update({name: ".".join(map(str, v)) for name, v in av.library_versions.items() if "codec" in name})
        if codec_name.startswith("hevc"):
            versions["x265"] = _x265_version()
    return versions


def _x265_version() -> str:
    """libx265's version as its own info SEI states it (PyAV does not expose it); '' if it cannot be read."""
    try:
        from fractions import Fraction

        import av

        ctx = av.CodecContext.create("libx265", "w")
        ctx.width, ctx.height, ctx.pix_fmt, ctx.time_base = 16, 16, "yuv444p", Fraction(1, 25)
        ctx.options = {"x265-params": "log-level=error"}
        frame = av.VideoFrame(16, 16, "yuv444p")
        stream = b"".join(bytes(packet) for packet in [*ctx.encode(frame), *ctx.encode(None)])
    except Exception:  # no libx265: the codec's own availability check says so
        return ""
    found = re.search(rb"x265 \(build \d+\) - ([0-9A-Za-z.+_-]+)", stream)
    return found.group(1).decode() if found else ""


def manifest(spec: CacheSpec) -> dict:
    return {"format": FORMAT, **asdict(spec), "libraries": library_versions(spec.codec)}


def _normalised(record: dict) -> dict:
    return json.loads(json.dumps(record))  # tuples as lists, as read back from the file


def read_manifest(out: Path) -> dict:
    path = Path(out) / MANIFEST_NAME
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise CacheError(f"{out}: not a decoded-crop cache (no {MANIFEST_NAME})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CacheError(f"cannot read {path}: {exc}") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise CacheError(f"{path}: not a {FORMAT} manifest")
    return record


def _check_manifest(out: Path, current: dict) -> bool:
    """True when ``out`` already holds a cache made as ``current``; a cache made otherwise is refused."""
    path = out / MANIFEST_NAME
    if not path.exists():
        if any(entry.name != LOCK_NAME for entry in out.iterdir()):
            raise CacheError(f"{out} is not empty and holds no {MANIFEST_NAME}; choose an empty or new folder")
        return False
    previous = read_manifest(out)
    current = _normalised(current)
    differ = sorted(key for key in previous.keys() | current.keys() if previous.get(key) != current.get(key))
    if differ:
        shown = "; ".join(f"{key}: {_short(previous.get(key))} there, {_short(current.get(key))} now" for key in differ)
        raise CacheError(f"{out} holds a cache built differently ({shown}); use another output folder")
    return True


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


@contextlib.contextmanager
def _build_lock(out: Path) -> Iterator[None]:
    """One build per cache folder: an advisory lock that the kernel drops when its process dies (no stale lock)."""
    try:
        import fcntl
    except ImportError:  # no fcntl (Windows): no lock
        yield
        return
    with open(out / LOCK_NAME, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CacheError(f"{out} is being built by another process; wait for it to finish") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# -- one shard ----------------------------------------------------------------------------------------------------
def source_rng(spec: CacheSpec, source: Source) -> np.random.Generator:
    """The image's own generator: its crops and qualities depend on the seed and its key only (not on the order
    or the worker that builds it), so a resumed or parallel build reproduces them."""
    digest = int.from_bytes(hashlib.sha256(source.key.encode()).digest()[:16], "little")
    return np.random.default_rng([spec.seed, digest])


def prepared_image(path: Path, spec: CacheSpec) -> np.ndarray:
    """The image crops are drawn from: read, resized like ``RandomCrops(resize=...)``, reflection-padded to at
    least the crop (as :class:`icmkit.train.data.RandomCrops` pads)."""
    from icmkit.image import load_rgb
    from icmkit.train.data import _resize_shorter

    image = _resize_shorter(load_rgb(path), spec.resize)
    height, width = image.shape[:2]
    if height < spec.crop or width < spec.crop:
        pad = ((0, max(0, spec.crop - height)), (0, max(0, spec.crop - width)), (0, 0))
        image = np.pad(image, pad, mode="reflect")
    return image


def draw(spec: CacheSpec, source: Source, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Crop offsets (K, 2) and qualities (K, Q): per crop, one quality from each of Q equal slices of the grid,
    so that every crop is seen coarse and fine and the whole grid is covered evenly."""
    rng = source_rng(spec, source)
    tops = rng.integers(0, height - spec.crop + 1, spec.crops)
    lefts = rng.integers(0, width - spec.crop + 1, spec.crops)
    slices = np.array_split(np.asarray(spec.grid, dtype=np.float64), spec.qualities)
    qualities = np.array([[rng.choice(part) for part in slices] for _ in range(spec.crops)], dtype=np.float64)
    return np.stack([tops, lefts], axis=1).astype(np.int64), qualities


def _quality(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def build_shard_arrays(spec: CacheSpec, source: Source) -> dict[str, np.ndarray]:
    """Crop, code and decode one image: the shard's arrays."""
    from icmkit.codecs.registry import get_codec

    codec = get_codec(spec.codec)
    image = prepared_image(source.path(spec), spec)
    offsets, qualities = draw(spec, source, *image.shape[:2])
    k, q, s = spec.crops, spec.qualities, spec.crop
    originals = np.empty((k, s, s, 3), np.uint8)
    decoded = np.empty((k, q, s, s, 3), np.uint8)
    sizes = np.empty((k, q), np.int64)
    for i, (top, left) in enumerate(offsets):
        originals[i] = image[top : top + s, left : left + s]
        crop = np.ascontiguousarray(originals[i])
        for j in range(q):
            data = codec.encode(crop, _quality(qualities[i, j]))
            decoded[i, j] = codec.decode(data)
            sizes[i, j] = len(data)
    return {"original": originals, "decoded": decoded, "quality": qualities, "bytes": sizes, "offset": offsets}


def build_shard(spec: CacheSpec, source: Source, out: Path) -> int:
    """Worker: build and write one shard atomically; the number of items (crop × quality) it holds."""
    from safetensors.numpy import save

    try:
        arrays = build_shard_arrays(spec, source)
    except IcmError as exc:
        raise CacheError(f"{source.path(spec)}: {exc}") from None
    path = source.shard(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    # One metadata key: safetensors writes its metadata map in hash order, so two keys would make two builds'
    # shards differ in bytes though not in content.
    atomic_write(path, save(arrays, metadata={"source": source.key}))
    return spec.crops * spec.qualities


# -- the build ----------------------------------------------------------------------------------------------------
@dataclass
class BuildResult:
    """What one ``icm cache decoded`` run did."""

    built: int  # shards written by this run
    skipped: int  # shards found complete from an earlier run
    items: int  # items (crop × quality) in the whole cache


def plan(spec: CacheSpec, out: Path) -> tuple[CacheSpec, list[Source]]:
    """Validate the spec (codec, settings, folders) before anything is written; the resolved spec and sources."""
    from icmkit.codecs.registry import get_codec
    from icmkit.decoded import CodecKind

    codec = get_codec(spec.codec)
    if codec.kind != CodecKind.PIXEL:
        raise CacheError(f"{spec.codec} is a {codec.kind.value} codec; a decoded-crop cache needs a pixel codec")
    codec.require_available()
    spec = spec.resolved()
    spec.check()
    for quality in spec.grid:
        codec.quality.validate(quality)
    if Path(out).exists() and not Path(out).is_dir():
        raise CacheError(f"{out}: exists and is not a folder")
    return spec, list_sources(spec)


def build(
    spec: CacheSpec,
    out: str | Path,
    workers: int = 1,
    on_start: Callable[[int, int], None] | None = None,
    on_shard: Callable[[int], None] | None = None,
) -> BuildResult:
    """Build (or complete) the cache of ``spec`` in ``out``. ``on_start(total_items, done_items)`` once the work is
    known; ``on_shard(items)`` after each shard written. A rerun checks the manifest and skips complete shards."""
    out = Path(out).expanduser()
    spec, sources = plan(spec, out)
    record = manifest(spec)
    out.mkdir(parents=True, exist_ok=True)
    with _build_lock(out):
        if not _check_manifest(out, record):
            atomic_write(out / MANIFEST_NAME, (json.dumps(record, indent=2) + "\n").encode())
        for stale in (out / SHARDS).rglob(".*.tmp") if (out / SHARDS).is_dir() else ():
            stale.unlink(missing_ok=True)  # a temporary file of a killed run (never a shard)
        todo = [source for source in sources if not source.shard(out).is_file()]
        per_shard = spec.crops * spec.qualities
        if on_start:
            on_start(per_shard * len(sources), per_shard * (len(sources) - len(todo)))
        _run(spec, out, todo, workers, on_shard or (lambda items: None))
    return BuildResult(len(todo), len(sources) - len(todo), per_shard * len(sources))


def _run(spec: CacheSpec, out: Path, todo: list[Source], workers: int, on_shard: Callable[[int], None]) -> None:
    if workers <= 1 or len(todo) <= 1:
        for source in todo:
            on_shard(build_shard(spec, source, out))
        return
    from icmkit.threads import one_thread_worker

    with ProcessPoolExecutor(max_workers=workers, initializer=one_thread_worker) as pool:
        futures = [pool.submit(build_shard, spec, source, out) for source in todo]
        try:
            for future in as_completed(futures):
                on_shard(future.result())
        except BaseException:
            for future in futures:
                future.cancel()
            raise


# -- reading ------------------------------------------------------------------------------------------------------
def shard_files(out: str | Path) -> list[Path]:
    return sorted((Path(out) / SHARDS).rglob("*" + SHARD_SUFFIX))


class DecodedCrops(Dataset):
    """The items of a cache for training: ``(original, decoded, quality)``, images as (3, H, W) float32 in [0, 1]
    and quality a float32 scalar (the codec's own knob value).

    Memory-bounded: nothing is loaded up front; each item maps its shard (safetensors, memory-mapped) and reads
    one crop. ``patch`` > 0 takes a random ``patch``² window of each crop at offsets that are multiples of
    ``align`` (16 keeps JPEG's 8×8 / 16×16 and HEVC's 8×8 deblocking grids where a whole image has them: a
    filter never sees a shifted block grid at the receiver). Random horizontal flips (``vflip`` adds vertical
    ones); flips keep the block grid only when the crop side is a multiple of 16, as the default 256 is.
    Randomness comes from torch's generator, which DataLoader seeds differently in each worker.

    Args:
        out: the cache folder (``icm cache decoded --out``).
        patch: side of the random window taken from each cached crop (0: the whole crop).
        align: the window's offsets are multiples of this many pixels.
        hflip: random horizontal flips.
        vflip: random vertical flips too.
    """

    def __init__(self, out: str | Path, patch: int = 0, align: int = 16, hflip: bool = True, vflip: bool = False):
        self.manifest = read_manifest(Path(out))
        self.files = shard_files(out)
        self.crops, self.qualities, self.crop = (self.manifest[k] for k in ("crops", "qualities", "crop"))
        if patch > self.crop:
            raise CacheError(f"patch {patch} is larger than the cached crops ({self.crop})")
        self.patch, self.align, self.hflip, self.vflip = patch, max(1, align), hflip, vflip

    def __len__(self) -> int:
        return len(self.files) * self.crops * self.qualities

    def locate(self, index: int) -> tuple[Path, int, int]:
        """Shard, crop and quality index of item ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(index)
        shard, rest = divmod(index, self.crops * self.qualities)
        return self.files[shard], *divmod(rest, self.qualities)

    def indices_within(self, lo: float, hi: float) -> np.ndarray:
        """Indices of the items whose quality lies in ``[lo, hi]`` (reads each shard's small quality table)."""
        from safetensors import safe_open

        qualities = []
        for path in self.files:
            with safe_open(path, framework="np") as shard:
                qualities.append(shard.get_tensor("quality").reshape(-1))
        flat = np.concatenate(qualities) if qualities else np.zeros(0)
        return np.flatnonzero((flat >= lo) & (flat <= hi))

    def record(self, index: int) -> dict:
        """Item ``index`` as stored: uint8 arrays, its quality and byte count (bpp = 8 · bytes / crop²)."""
        from safetensors import safe_open

        path, k, j = self.locate(index)
        with safe_open(path, framework="np") as shard:
            return {
                "original": shard.get_slice("original")[k],
                "decoded": shard.get_slice("decoded")[k, j],
                "quality": float(shard.get_slice("quality")[k, j]),
                "bytes": int(shard.get_slice("bytes")[k, j]),
                "source": shard.metadata().get("source", ""),
            }

    def __getitem__(self, index: int):
        import torch

        item = self.record(index)
        original, decoded = item["original"], item["decoded"]
        if self.patch:
            top, left = (self._offset() for _ in range(2))
            window = (slice(top, top + self.patch), slice(left, left + self.patch))
            original, decoded = original[window], decoded[window]
        pair = torch.from_numpy(np.stack([original, decoded])).permute(0, 3, 1, 2)  # (2, 3, H, W) uint8
        if self.hflip and torch.rand(()) < 0.5:
            pair = pair.flip(-1)
        if self.vflip and torch.rand(()) < 0.5:
            pair = pair.flip(-2)
        pair = pair.float().div_(255)
        return pair[0].contiguous(), pair[1].contiguous(), torch.tensor(item["quality"], dtype=torch.float32)

    def _offset(self) -> int:
        import torch

        steps = (self.crop - self.patch) // self.align
        return int(torch.randint(0, steps + 1, ())) * self.align


def cache_size_bytes(out: str | Path) -> int:
    return sum(path.stat().st_size for path in shard_files(out))
