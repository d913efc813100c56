"""A cache of the frozen backbone head's features, so that a feature codec's training steps skip the head.

The head (stem … ``split``) is frozen, so its output for a given view of an image never changes: computing it once
per view, instead of once per step, leaves each step only the codec and the tail terms. Per training image the
cache holds ``V`` views — a random crop position and a horizontal flip, drawn exactly as
:class:`~icmkit.train.data.RandomCrops` draws them (uniform over the resized, reflection-padded image; flip with
probability ½), seeded by ``(seed, image index)`` so that a view depends on nothing but its image (not on the
worker, the shard or the order of the build) — each stored as the head's output in float16.

Layout of a cache folder (outside the repository; a few GB for a real training set):

- ``manifest.json``: what the cache was built for — backbone, weights, split, the head's digest, crop, resize,
  views, seed, the data folders and a digest of their file list — and ``complete`` once every shard exists. A
  rebuild with other settings is refused, never mixed in; a rebuild with the same settings resumes.
- ``shard-NNNNN.safetensors``: ``features`` ``(images, V, C, h, w)`` float16, ``offsets`` ``(images, V, 3)``
  int32 (top, left, flip: the view, so its pixels can be cut again), ``index`` (the images' positions in the
  sorted file list). Each is written atomically by the worker that computed it: a shard file is whole or absent.
- ``center.safetensors``: the head's output on the centre crops of the first :data:`CENTER_IMAGES` images, in
  float32 — what a fresh codec measures its feature statistics on (the trainer without a cache does the same).

Training (``feature_cache: DIR``, :class:`CachedViews`) draws images as before and, for an image, the next of its
views in a seeded permutation that is renewed only when all ``V`` were used: no view repeats before its image
was drawn ``V`` times, so the cache gives ``V`` epochs of fresh views.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save
from torch import nn

from icmkit.backbones import SplitBackbone
from icmkit.errors import ConfigError
from icmkit.fileio import atomic_write
from icmkit.image import image_to_tensor, load_rgb
from icmkit.threads import one_thread_worker
from icmkit.train.config import TrainConfig
from icmkit.train.data import _resize_shorter, find_images

FORMAT = "icmkit-feature-cache/1"
MANIFEST = "manifest.json"
CENTER_FILE = "center.safetensors"
CENTER_IMAGES = 32  # the images a fresh codec's feature statistics come from (Trainer._init_feature_statistics)
SHARD_IMAGES = 32  # images per shard: ~2.6 MB per view and shard at crop 256, so a lost shard costs seconds
# Views per forward pass of the head: on one thread a batch of 32 256² views took 3× the CPU time per view of a
# batch of 4 (activations of 32 views no longer fit the caches).
HEAD_BATCH = 4
# Manifest entries a rebuild and a training run must agree with (``complete`` and ``shards`` follow from them).
SPEC_KEYS = (
    "format",
    "backbone",
    "backbone_weights",
    "split",
    "head_digest",
    "channels",
    "stride",
    "crop",
    "resize",
    "views",
    "seed",
    "folders",
    "images",
    "files_digest",
    "shard_images",
)
# What a training run checks (the views and their seed are the cache's own choice).
TRAINING_KEYS = tuple(k for k in SPEC_KEYS if k not in ("views", "seed", "shard_images"))


# -- views ---------------------------------------------------------------------------------------------------------
def source_image(path: Path, crop: int, resize: int) -> np.ndarray:
    """A training image as :class:`~icmkit.train.data.RandomCrops` holds it before cutting: resized so its shorter
    side is ``resize`` (bicubic; 0 = native), then padded by reflection to at least ``crop`` a side."""
    image = _resize_shorter(load_rgb(path), resize)
    h, w, _ = image.shape
    if h < crop or w < crop:
        image = np.pad(image, ((0, max(0, crop - h)), (0, max(0, crop - w)), (0, 0)), mode="reflect")
    return image


def view_offsets(seed: int, index: int, shape: tuple[int, ...], crop: int, views: int) -> np.ndarray:
    """``(views, 3)`` int32 rows (top, left, flip) of image ``index``: RandomCrops' distribution, from a generator
    seeded by ``(seed, index)`` alone."""
    rng = np.random.default_rng([seed, index])
    h, w = shape[:2]
    rows = []
    for _ in range(views):
        top = int(rng.integers(0, h - crop + 1))
        left = int(rng.integers(0, w - crop + 1))
        rows.append((top, left, int(rng.random() < 0.5)))
    return np.asarray(rows, dtype=np.int32)


def cut_view(image: np.ndarray, offset, crop: int) -> torch.Tensor:
    """The view ``offset`` = (top, left, flip) of a :func:`source_image`, as a ``(3, crop, crop)`` float tensor."""
    top, left, flip = (int(v) for v in offset)
    patch = image[top : top + crop, left : left + crop]
    return image_to_tensor(patch[:, ::-1] if flip else patch)


def center_view(image: np.ndarray, crop: int) -> torch.Tensor:
    """The centre crop RandomCrops.center_crop cuts (feature statistics of a fresh codec)."""
    h, w, _ = image.shape
    return cut_view(image, ((h - crop) // 2, (w - crop) // 2, 0), crop)


# -- the manifest --------------------------------------------------------------------------------------------------
def files_digest(files: list[Path], folders: list[Path]) -> str:
    """SHA-256 of the sorted file list (names relative to their folder, and sizes): a cache of other images — a
    file added, removed or replaced by one of another size — no longer matches."""
    digest = hashlib.sha256()
    for path in files:
        folder = next((f for f in folders if path.is_relative_to(f)), path.parent)
        digest.update(f"{path.relative_to(folder)}\0{path.stat().st_size}\n".encode())
    return digest.hexdigest()


def cache_spec(
    config: TrainConfig, backbone: SplitBackbone, files: list[Path], views: int, seed: int, shard_images: int
) -> dict:
    """The manifest entries of a cache of ``config``'s data, crop and resize through ``backbone``'s head."""
    folders = [Path(f).resolve() for f in config.data_folders()]
    return {
        "format": FORMAT,
        "backbone": backbone.info.backbone,
        "backbone_weights": config.model.backbone_weights,
        "split": backbone.info.stage,
        "head_digest": backbone.info.head_digest.hex(),
        "channels": backbone.info.channels,
        "stride": backbone.info.stride,
        "crop": config.data.crop,
        "resize": config.data.resize,
        "views": views,
        "seed": seed,
        "folders": [str(f) for f in folders],
        "images": len(files),
        "files_digest": files_digest([Path(f).resolve() for f in files], folders),
        "shard_images": shard_images,
    }


def read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"feature cache {folder}: no {MANIFEST} (build it with `icm cache features`)") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"feature cache {folder}: unreadable {MANIFEST} ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ConfigError(f"feature cache {folder}: {MANIFEST} is not a {FORMAT} manifest")
    return manifest


def check_manifest(folder: Path, manifest: dict, expected: dict, keys=SPEC_KEYS) -> None:
    """Refuse a cache built for something else, naming every entry that differs."""
    differ = [k for k in keys if manifest.get(k) != expected[k]]
    if differ:
        shown = "; ".join(f"{k}: cache {_short(manifest.get(k))}, asked {_short(expected[k])}" for k in differ)
        raise ConfigError(
            f"feature cache {folder} was built for other settings ({shown}); use another folder or delete this one"
        )


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."


def shard_path(folder: Path, shard: int) -> Path:
    return folder / f"shard-{shard:05d}.safetensors"


def shard_count(manifest: dict) -> int:
    return math.ceil(manifest["images"] / manifest["shard_images"])


# -- building ------------------------------------------------------------------------------------------------------
_WORKER_BACKBONES: dict[tuple, SplitBackbone] = {}


def _worker_backbone(name: str, split: str, weights: str, digest: str) -> SplitBackbone:
    """The head, loaded once per worker process and checked against the manifest's digest."""
    key = (name, split, weights)
    if key not in _WORKER_BACKBONES:
        from icmkit.backbones import split_classifier

        backbone = split_classifier(name, split, None if weights == "none" else weights)
        if backbone.info.head_digest.hex() != digest:
            raise ConfigError(f"{name} {split}: the head loaded here is not the one the cache is built for")
        _WORKER_BACKBONES[key] = backbone
    return _WORKER_BACKBONES[key]


@torch.no_grad()
def compute_shard(manifest: dict, files: list[str], first: int) -> dict[str, torch.Tensor]:
    """The shard of images ``first …`` (``files``): an image's views go through the head :data:`HEAD_BATCH` at a
    time (a fixed batching: float32 sums, hence the stored float16 values, do not depend on the worker)."""
    backbone = _worker_backbone(
        manifest["backbone"], manifest["split"], manifest["backbone_weights"], manifest["head_digest"]
    )
    crop, views = manifest["crop"], manifest["views"]
    features, offsets = [], []
    for i, path in enumerate(files):
        image = source_image(Path(path), crop, manifest["resize"])
        rows = view_offsets(manifest["seed"], first + i, image.shape, crop, views)
        batch = torch.stack([cut_view(image, row, crop) for row in rows])
        chunks = [backbone.features(batch[j : j + HEAD_BATCH]) for j in range(0, views, HEAD_BATCH)]
        features.append(torch.cat(chunks).half())
        offsets.append(torch.from_numpy(rows))
    return {
        "features": torch.stack(features).contiguous(),
        "offsets": torch.stack(offsets).contiguous(),
        "index": torch.arange(first, first + len(files), dtype=torch.int64),
    }


def _write_shard(folder: str, shard: int, manifest: dict, files: list[str], first: int) -> tuple[int, int]:
    """Worker: compute one shard and write it atomically; (shard, images) for the progress."""
    tensors = compute_shard(manifest, files, first)
    atomic_write(shard_path(Path(folder), shard), save(tensors, metadata={"head_digest": manifest["head_digest"]}))
    return shard, len(files)


@torch.no_grad()
def _write_center(folder: Path, manifest: dict, backbone: SplitBackbone, files: list[Path]) -> None:
    crops = [center_view(source_image(f, manifest["crop"], manifest["resize"]), manifest["crop"]) for f in files]
    features = torch.cat([backbone.features(torch.stack(crops[i : i + 8])) for i in range(0, len(crops), 8)])
    atomic_write(folder / CENTER_FILE, save({"features": features.float().contiguous()}))


def build_feature_cache(
    config: TrainConfig,
    out: str | Path,
    views: int = 16,
    seed: int = 0,
    workers: int = 1,
    shard_images: int = SHARD_IMAGES,
    progress: Callable[[int, int], None] | None = None,
    backbone: SplitBackbone | None = None,
) -> dict:
    """Build (or finish) the cache of ``config``'s training images in ``out``; the complete manifest.

    Shards already on disk are kept (a rerun resumes); a manifest of other settings is refused.
    ``progress(done, total)`` is called with images done after each shard. ``workers`` > 1 computes shards in a
    process pool of one torch thread each; ``workers`` = 1 computes them here, on this process's threads.
    """
    from icmkit.train.builders import load_backbone, trains_on_backbone_features

    if not trains_on_backbone_features(config):
        raise ConfigError(f"a feature cache is for models fed by a backbone's head, not {config.model.architecture}")
    if not 1 <= views <= 4096 or not 1 <= shard_images <= 4096 or workers < 1:
        raise ConfigError("views and shard_images must be in [1, 4096], workers ≥ 1")
    if seed < 0:
        raise ConfigError(f"seed must be ≥ 0, got {seed}")
    out = Path(out)
    try:
        files = find_images(config.data_folders())
    except FileNotFoundError as exc:
        raise ConfigError(f"data: {exc}") from None
    backbone = backbone or load_backbone(config)
    spec = cache_spec(config, backbone, files, views, seed, shard_images)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: not a folder")
    out.mkdir(parents=True, exist_ok=True)
    if (out / MANIFEST).exists():
        manifest = read_manifest(out)
        check_manifest(out, manifest, spec)
    else:
        if any(out.iterdir()):
            raise ConfigError(f"{out}: not empty and not a feature cache; choose an empty or new folder")
        manifest = {**spec, "complete": False}
        atomic_write(out / MANIFEST, json.dumps(manifest, indent=1).encode())
    if not (out / CENTER_FILE).exists():
        _write_center(out, manifest, backbone, files[:CENTER_IMAGES])
    jobs = []
    for shard in range(shard_count(manifest)):
        first = shard * shard_images
        if not shard_path(out, shard).exists():
            jobs.append((shard, [str(f) for f in files[first : first + shard_images]], first))
    done = len(files) - sum(len(chunk) for _, chunk, _ in jobs)
    if progress is not None:
        progress(done, len(files))
    if workers == 1:
        _WORKER_BACKBONES[(config.model.backbone, config.model.split, config.model.backbone_weights)] = backbone
        for shard, chunk, first in jobs:
            done += _write_shard(str(out), shard, manifest, chunk, first)[1]
            if progress is not None:
                progress(done, len(files))
    elif jobs:
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), initializer=one_thread_worker) as pool:
            futures = [pool.submit(_write_shard, str(out), s, manifest, c, f) for s, c, f in jobs]
            for future in as_completed(futures):
                done += future.result()[1]
                if progress is not None:
                    progress(done, len(files))
    manifest = {**manifest, "complete": True}
    atomic_write(out / MANIFEST, json.dumps(manifest, indent=1).encode())
    return manifest


def cache_bytes(manifest: dict) -> int:
    """Bytes of the shards' features: images × views × C × (crop / stride)² × 2."""
    side = manifest["crop"] // manifest["stride"]
    return manifest["images"] * manifest["views"] * manifest["channels"] * side * side * 2


# -- training ------------------------------------------------------------------------------------------------------
class CachedViews:
    """A training run's source of head features: ``dataset[i]`` is the next view of image ``i``, float32.

    Which view: image ``i``'s ``k``-th draw takes view ``perm[k mod V]`` of the permutation seeded by
    ``(seed, i, k div V)`` — every view once before any repeats. The draw counters (:attr:`uses`) are the whole
    state; the trainer saves them in its checkpoints, so a resumed run takes exactly the views an uninterrupted
    one takes. :attr:`rng` is unused here: it keeps the checkpoint's ``dataset_rng`` entry of the pixel path.

    Args:
        folder: A complete feature cache (written by ``icm cache features``); an unfinished one is refused.
        seed: Seed of the view permutations.
    """

    def __init__(self, folder: str | Path, seed: int = 0):
        self.folder = Path(folder)
        self.manifest = read_manifest(self.folder)
        if not self.manifest.get("complete"):
            raise ConfigError(
                f"feature cache {self.folder} is unfinished: run the same `icm cache features` command again to "
                "complete it"
            )
        self.views, self.crop = int(self.manifest["views"]), int(self.manifest["crop"])
        self.shard_images = int(self.manifest["shard_images"])
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.uses = np.zeros(int(self.manifest["images"]), dtype=np.int64)
        self._shards: dict[int, object] = {}

    @classmethod
    def for_training(cls, config: TrainConfig, backbone: SplitBackbone, files: list[Path], seed: int) -> CachedViews:
        """The cache ``config.data.feature_cache``, refused unless it was built for this config's head, crop, resize
        and data."""
        cached = cls(config.data.feature_cache, seed)
        expected = cache_spec(config, backbone, files, cached.views, 0, cached.shard_images)
        check_manifest(cached.folder, cached.manifest, expected, TRAINING_KEYS)
        return cached

    def __len__(self) -> int:
        return len(self.uses)

    def view_of(self, index: int, use: int) -> int:
        """The view image ``index`` shows at its ``use``-th draw."""
        order = np.random.default_rng([self.seed, index, use // self.views]).permutation(self.views)
        return int(order[use % self.views])

    def __getitem__(self, index: int) -> torch.Tensor:
        view = self.view_of(index, int(self.uses[index]))
        self.uses[index] += 1
        return self.features(index, view)

    def features(self, index: int, view: int) -> torch.Tensor:
        """The stored head output of view ``view`` of image ``index``, ``(C, h, w)`` float32."""
        shard, row = divmod(index, self.shard_images)
        if shard not in self._shards:
            path = shard_path(self.folder, shard)
            if not path.exists():
                raise ConfigError(f"feature cache {self.folder}: {path.name} is missing")
            self._shards[shard] = safe_open(str(path), framework="pt")
        part = self._shards[shard].get_slice("features")[row : row + 1, view : view + 1]
        return part[0, 0].float()

    def center_features(self) -> torch.Tensor:
        """The head's float32 output on the first images' centre crops (a fresh codec's feature statistics)."""
        with safe_open(str(self.folder / CENTER_FILE), framework="pt") as handle:
            return handle.get_tensor("features")

    def loss_target(self, features: torch.Tensor) -> torch.Tensor:
        """What the objective reads from "the input images": only their shape (the rate is per input pixel), so a
        zero of that shape that allocates nothing."""
        return features.new_zeros(()).expand(features.shape[0], 3, self.crop, self.crop)

    def state(self) -> torch.Tensor:
        return torch.from_numpy(self.uses.copy())

    def load_state(self, uses: torch.Tensor) -> None:
        if uses.shape != self.uses.shape:
            raise ConfigError(f"checkpoint: view counters of {uses.shape[0]} images, the cache has {len(self.uses)}")
        self.uses = uses.numpy().astype(np.int64).copy()


class CachedFeatureCodecTraining(nn.Module):
    """Cached head features → codec: :class:`~icmkit.losses.feature.FeatureCodecTraining` without the head (the
    same ``codec`` attribute, so parameter names under DDP are the same).

    Args:
        codec: The feature codec model being trained.
    """

    def __init__(self, codec: nn.Module):
        super().__init__()
        self.codec = codec

    def forward(self, features: torch.Tensor, quality: int = 1) -> dict:
        output = self.codec(features, quality)
        output["features"] = features
        return output
