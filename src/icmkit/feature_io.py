"""Decoded features on disk: :class:`~icmkit.codecs.FeatureMaps` ⇄ ``.safetensors``.

``icm decompress`` writes a feature stream's decoded features in this layout and ``icm predict`` (and
:func:`icmkit.predict`) read it back. One tensor and string metadata:

================ ===================================================================================
tensor
``features``     float32, ``(1, C, h, w)`` — exactly ``FeatureMaps.tensors["features"]``, batch of one
                 (a ``(C, h, w)`` tensor is accepted on reading and gets the batch axis back)
metadata
``format``       ``icmkit.features/1``
``backbone``     the classifier whose head made the features, e.g. ``tf_efficientnet_lite0``
``split``        the head's last stage, e.g. ``blocks.2``
``head_digest``  16 hex digits: the 8-byte digest of the head's weights
``stride``       input pixels per feature sample, each side (integer)
``image_size``   ``HxW``: height × width of the coded image (``FeatureMaps.image_size`` order)
``codec``        the codec that decoded them (optional)
``quality``      its quality id (optional, integer)
``feature_shape`` ``CxHxW`` of the coded map before cropping, as in the stream header (optional)
``resized``      ``hxw``: detection streams only — the image's size after the detector's resize; the map
                 then covers that size padded to 32 (``h = ceil32(h) / stride``), not ``image_size``
``input_size``   ``hxw``: classifier-geometry streams only — the classifier's centre crop of the resized
                 image; the map then covers it (``h = ceil(h / stride)``), not ``image_size``
================ ===================================================================================

Reading checks all of it (``h = ceil(H / stride)``, ``w = ceil(W / stride)``, finite values, …) and
raises :class:`FeatureFileError` (an :class:`~icmkit.errors.IcmError`) with one line on any bad file.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from icmkit.decoded import FEATURES, FeatureMaps
from icmkit.errors import IcmError, ResourceLimitError, one_line
from icmkit.fileio import atomic_write, read_user_file
from icmkit.geometry import ClassifierGeometry, DetectionGeometry, format_size, parse_size
from icmkit.limits import ENVIRONMENT as PIXELS_ENVIRONMENT
from icmkit.limits import check_decode_memory, max_pixels

FORMAT = "icmkit.features/1"
SUFFIX = ".safetensors"
_REQUIRED = ("backbone", "split", "head_digest", "stride", "image_size")
_MAX_HEADER = 1 << 20  # one tensor and a few strings need a few hundred bytes
_SIZE = re.compile(r"^([1-9][0-9]{0,8})x([1-9][0-9]{0,8})$")
_SHAPE = re.compile(r"^([1-9][0-9]{0,8})x([1-9][0-9]{0,8})x([1-9][0-9]{0,8})$")
_DIGEST = re.compile(r"^[0-9a-f]{16}$")


class FeatureFileError(IcmError):
    """A decoded-features file that is missing, unreadable, or not in icmkit's layout."""


def looks_like_safetensors(data: bytes) -> bool:
    """True when ``data`` starts like a safetensors file (8-byte header length, then a JSON object)."""
    if len(data) < 10:
        return False
    length = int.from_bytes(data[:8], "little")
    return 2 <= length <= len(data) - 8 and data[8:9] == b"{"


def features_to_bytes(features: FeatureMaps) -> bytes:
    """Serialise ``features`` (one ``"features"`` tensor with backbone metadata) as safetensors bytes."""
    import torch
    from safetensors.torch import save

    tensor, metadata = _check_maps(features)
    tensor = torch.as_tensor(tensor).detach().to("cpu", torch.float32).contiguous()
    checked = _build_maps(tensor, metadata, "features to save")  # what load_features would refuse
    return save({FEATURES: checked.tensors[FEATURES]}, metadata=metadata)


def save_features(features: FeatureMaps, path: str | Path, overwrite: bool = True) -> None:
    """Write ``features`` to ``path`` (atomically: a temporary file, then a rename; ``overwrite`` False: refuse a
    ``path`` that exists by then, see :func:`icmkit.fileio.atomic_write`)."""
    atomic_write(path, features_to_bytes(features), overwrite=overwrite)


def load_features(source: str | Path | bytes, name: str | None = None) -> FeatureMaps:
    """Read a file written by :func:`save_features` (a path or its bytes) back into :class:`FeatureMaps`."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, label = bytes(source), name or "<bytes>"
    else:
        path = Path(source)
        label = name or str(path)
        data = _read(path, label)
    header = _header(data, label)
    metadata = header.get("__metadata__") or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise FeatureFileError(f"{label}: malformed safetensors metadata")
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    if sorted(tensors) != [FEATURES]:
        held = ", ".join(sorted(tensors)) or "none"
        raise FeatureFileError(f"{label}: expected one tensor named {FEATURES!r}, found {held}")
    if metadata.get("format") != FORMAT:
        raise FeatureFileError(
            f"{label}: not an icmkit features file (format {metadata.get('format')!r}, expected {FORMAT!r})"
        )
    _check_declared_cost(tensors[FEATURES], metadata, label)  # before any tensor is read or converted
    try:
        from safetensors.torch import load

        tensor = load(data)[FEATURES]
    except Exception as exc:  # noqa: BLE001 — any failure to parse a user's file is a user error
        raise FeatureFileError(f"{label}: cannot read safetensors ({one_line(exc)})") from None
    return _build_maps(tensor, metadata, label)


# -- internals ---------------------------------------------------------------------------------------
def _read(path: Path, label: str) -> bytes:
    return read_user_file(path, None, FeatureFileError, label=label)  # at most ICM_MAX_INPUT_BYTES


def tail_memory(feature_rows: int, feature_cols: int, stride: int) -> int:
    """Working memory (bytes) of running a classifier's tail on a ``feature_rows``×``feature_cols`` map of
    ``stride``: proportional to the pixels the map covers (measured: 54 bytes a pixel for EfficientNet-Lite0
    after blocks.2, peak RSS of `icm predict` on 1 and 4 MP maps)."""
    return TAIL_BYTES_PER_PIXEL * feature_rows * feature_cols * stride * stride


TAIL_BYTES_PER_PIXEL = 64


def _check_declared_cost(entry: object, metadata: dict[str, str], label: str) -> None:
    """Refuse, from the safetensors header and metadata alone, features whose image is over ``ICM_MAX_PIXELS``
    or whose tail would need more than ``ICM_MAX_DECODE_MEMORY`` (a few MB of fp8 can declare an 8192² map)."""
    shape = entry.get("shape") if isinstance(entry, dict) else None
    if not isinstance(shape, list) or len(shape) not in (3, 4) or not all(isinstance(n, int) and n > 0 for n in shape):
        raise FeatureFileError(f"{label}: features must be shaped (1, C, h, w) or (C, h, w), not {shape}")
    size = _SIZE.match(metadata.get("image_size", ""))
    if size is not None and int(size[1]) * int(size[2]) > max_pixels():
        raise ResourceLimitError(
            f"{label}: features of a {size[2]}×{size[1]} image = {int(size[1]) * int(size[2]):,} pixels, over the "
            f"limit of {max_pixels():,} (set {PIXELS_ENVIRONMENT} to raise it)"
        )
    stride = metadata.get("stride", "")
    if re.fullmatch(r"[1-9][0-9]{0,8}", stride):
        check_decode_memory(
            tail_memory(shape[-2], shape[-1], int(stride)),
            f"{label}: a {shape[-2]}×{shape[-1]} map",
            "for the classifier",
        )


def _header(data: bytes, label: str) -> dict[str, Any]:
    if len(data) < 8:
        raise FeatureFileError(f"{label}: not a safetensors file (too short)")
    length = int.from_bytes(data[:8], "little")
    if length > _MAX_HEADER or length > len(data) - 8:
        raise FeatureFileError(f"{label}: not a safetensors file (bad header length) or truncated")
    try:
        header = json.loads(data[8 : 8 + length].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise FeatureFileError(f"{label}: not a safetensors file (header is not JSON)") from None
    except RecursionError:  # json's parser recurses per nesting level: "[[[[…" exhausts the stack
        raise FeatureFileError(f"{label}: not a safetensors file (header nested too deeply)") from None
    if not isinstance(header, dict):
        raise FeatureFileError(f"{label}: not a safetensors file (header is not a JSON object)")
    return header


def _int(metadata: dict[str, str], key: str, label: str) -> int:
    value = metadata[key]
    if not re.fullmatch(r"[1-9][0-9]{0,8}", value):
        raise FeatureFileError(f"{label}: metadata {key}={value!r} is not a positive integer")
    return int(value)


def _build_maps(tensor, metadata: dict[str, str], label: str) -> FeatureMaps:
    import torch

    missing = [k for k in _REQUIRED if not metadata.get(k)]
    if missing:
        raise FeatureFileError(f"{label}: metadata lacks {', '.join(missing)}")
    stride = _int(metadata, "stride", label)
    size = _SIZE.match(metadata["image_size"])
    if size is None:
        raise FeatureFileError(f"{label}: metadata image_size={metadata['image_size']!r} is not HxW")
    height, width = int(size[1]), int(size[2])
    if not _DIGEST.match(metadata["head_digest"]):
        raise FeatureFileError(f"{label}: metadata head_digest={metadata['head_digest']!r} is not 16 hex digits")
    if not tensor.is_floating_point():
        raise FeatureFileError(f"{label}: features must be floating point, not {tensor.dtype}")
    if tensor.ndim == 3:
        tensor = tensor.unsqueeze(0)
    if tensor.ndim != 4 or tensor.shape[0] != 1 or min(tensor.shape) < 1:
        raise FeatureFileError(f"{label}: features must be shaped (1, C, h, w) or (C, h, w), not {tuple(tensor.shape)}")
    expected = (math.ceil(height / stride), math.ceil(width / stride))
    resized = None
    if "resized" in metadata:
        resized = parse_size(metadata["resized"])
        if resized is None:
            raise FeatureFileError(f"{label}: metadata resized={metadata['resized']!r} is not HxW")
        expected = DetectionGeometry((height, width), resized).feature_size(stride)
    cropped = None
    if "input_size" in metadata:
        cropped = parse_size(metadata["input_size"])
        if cropped is None or resized is not None:
            raise FeatureFileError(f"{label}: metadata input_size={metadata['input_size']!r} is not HxW")
        expected = ClassifierGeometry((height, width), cropped).feature_size(stride)
    if tuple(tensor.shape[-2:]) != expected:
        what = f"a {height}×{width} image" + (f" resized to {format_size(resized)}" if resized else "")
        what += f" cropped to {format_size(cropped)}" if cropped else ""
        raise FeatureFileError(
            f"{label}: {what} at stride {stride} has {expected[0]}×{expected[1]} features, "
            f"the file holds {tensor.shape[-2]}×{tensor.shape[-1]}"
        )
    meta: dict[str, Any] = {
        "backbone": metadata["backbone"],
        "split": metadata["split"],
        "head_digest": metadata["head_digest"],
        "stride": stride,
    }
    if "feature_shape" in metadata:
        shape = _SHAPE.match(metadata["feature_shape"])
        if shape is None or int(shape[1]) != tensor.shape[1]:
            raise FeatureFileError(
                f"{label}: metadata feature_shape={metadata['feature_shape']!r} does not fit {tensor.shape[1]} channels"
            )
        meta["feature_shape"] = metadata["feature_shape"]
    if resized is not None:
        meta["resized"] = resized
    if cropped is not None:
        meta["input_size"] = cropped
    if "codec" in metadata:
        meta["codec"] = metadata["codec"]
    if "quality" in metadata:
        meta["quality"] = _int(metadata, "quality", label)
    tensor = tensor.to(torch.float32).contiguous()
    if not bool(torch.isfinite(tensor).all()):
        raise FeatureFileError(f"{label}: features hold NaN or infinite values")
    return FeatureMaps(tensors={FEATURES: tensor}, strides={FEATURES: stride}, image_size=(height, width), meta=meta)


def _check_maps(features: FeatureMaps) -> tuple[Any, dict[str, str]]:
    if not isinstance(features, FeatureMaps):
        raise IcmError(f"expected FeatureMaps, got {type(features).__name__}")
    if sorted(features.tensors) != [FEATURES]:
        raise IcmError(
            f"icmkit writes one feature tensor named {FEATURES!r}, not {', '.join(sorted(features.tensors))}"
        )
    tensor = features.tensors[FEATURES]
    stride = features.strides.get(FEATURES) or features.meta.get("stride")
    missing = [k for k in ("backbone", "split", "head_digest") if not features.meta.get(k)]
    if missing or not stride:
        raise IcmError(f"features lack {', '.join(missing + ([] if stride else ['stride']))}: cannot be saved")
    height, width = features.image_size
    metadata = {
        "format": FORMAT,
        "backbone": str(features.meta["backbone"]),
        "split": str(features.meta["split"]),
        "head_digest": str(features.meta["head_digest"]),
        "stride": str(int(stride)),
        "image_size": f"{int(height)}x{int(width)}",
    }
    for key in ("codec", "quality", "feature_shape"):
        if features.meta.get(key) is not None:
            metadata[key] = str(features.meta[key])
    for key in ("resized", "input_size"):
        if features.meta.get(key) is not None:
            metadata[key] = format_size(features.meta[key])
    shape = tuple(getattr(tensor, "shape", ()))
    if len(shape) not in (3, 4) or (len(shape) == 4 and shape[0] != 1):
        raise IcmError(f"features must be shaped (1, C, h, w) or (C, h, w), not {shape}")
    return tensor, metadata
