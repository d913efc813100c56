"""Weight files: safetensors with self-describing metadata, and the digest that streams carry."""

from __future__ import annotations

import json
import stat
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save

from icmkit.digest import DIGEST_BYTES, weights_digest  # noqa: F401 (re-exported)
from icmkit.entropy._tables import TABLE_BUFFERS
from icmkit.errors import IcmError, one_line
from icmkit.fileio import atomic_write
from icmkit.limits import MODEL_SIZE_RANGES
from icmkit.models import CompressionModel, build_model


def save_weights(model: CompressionModel, path: str | Path, metadata: dict | None = None, slim: bool = False) -> None:
    """Write ``model``'s tensors and metadata. ``slim``: only what coding reads — no float twins of the
    exact-integer networks (``model.float_twins``) and float weights as float16 (the loaded model computes
    in float32 on the stored values, so encoder and decoder still agree) — for shipped files."""
    if slim:
        model.require_finalized()
    source = model.coding_state_dict() if slim else model.state_dict()
    state = {k: v.detach().cpu().contiguous() for k, v in source.items()}
    if slim:
        state = {k: v.half() if v.dtype == torch.float32 and not _is_table(k) else v for k, v in state.items()}
    meta = {"architecture": model.architecture, "config": json.dumps(model.config)}
    meta.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()})
    atomic_write(path, save(state, metadata=meta))


def read_metadata(path: str | Path) -> dict[str, str]:
    """A weights file's metadata (its safetensors header only), after checking it is a regular file of a sane size."""
    path = Path(path)
    _check_file(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
    except FileNotFoundError:
        raise IcmError(f"{path}: weights file not found") from None
    except Exception as exc:  # safetensors raises its own error types for foreign files
        raise IcmError(f"{path}: not a safetensors weights file ({one_line(exc)})") from None
    if not all(isinstance(v, str) for v in metadata.values()):
        raise IcmError(f"{path}: not a safetensors weights file (metadata values must be text)")
    return metadata


def file_qualities(path: str | Path) -> int:
    """How many rate points (gain units) a variable-rate weights file holds, from its (checked) header alone."""
    return int(check_weights_file(path).config.get("qualities", 1))


def load_weights(path: str | Path) -> tuple[CompressionModel, dict[str, str]]:
    """Build the architecture the file names and load its tensors (strictly), after :func:`check_weights_file`
    and :func:`check_weight_values`: a crafted file ends in one :class:`IcmError`, before any model is built."""
    checked = check_weights_file(path)
    state = _read_tensors(path)
    check_weight_values(path, checked, state)
    try:
        model = build_model(checked.architecture, **checked.config)
        result = model.load_state_dict(state, strict=False)  # float16 tensors are widened on copy
        missing = [k for k in result.missing_keys if not model.is_float_twin(k)]
        if missing or result.unexpected_keys:
            keys = missing or result.unexpected_keys
            raise RuntimeError(f"{len(keys)} {'missing' if missing else 'unexpected'} tensors, e.g. {keys[0]}")
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise IcmError(f"{path}: not icmkit codec weights ({one_line(exc)})") from None
    return model.eval(), checked.metadata


def coding_digest(path: str | Path) -> bytes:
    """The digest a codec over this file writes in its streams (:meth:`CompressionModel.coding_state_dict` of the
    loaded model), computed from the checked file without building the model (``icm info``)."""
    checked = check_weights_file(path)
    state = _read_tensors(path)
    check_weight_values(path, checked, state)
    coding = {}
    for key, tensor in state.items():
        if key.split(".", 1)[0] in checked.float_twins:
            continue
        expected = checked.dtypes[key]
        coding[key] = tensor if _is_table(key) else tensor.to(expected)  # loading widens float16 to the model's
    return weights_digest(coding)


# -- checks of a weights file, before anything is built from it -------------------------------------
MAX_WEIGHTS_BYTES = 1 << 30  # a codec's weights are MiBs (the shipped ones 4–9 MiB)
# Whole-number config values of every architecture: (least, greatest). Others must be short text.
CONFIG_INT_RANGES: dict[str, tuple[int, int]] = {
    **MODEL_SIZE_RANGES,
    "channels": (1, 4096),
    "gnconv_order": (1, 6),
    "transformer_depth": (0, 8),
    "qualities": (1, 64),
    "scale": (1, 16),  # restoration filters (icmkit.models.restoration)
    "width": (1, 1024),
    "blocks": (0, 64),
    "embedding": (1, 1024),
    "edge_kernel": (1, 3),
}
# Real-valued config values: (least, greatest) — a restoration filter's quality range.
CONFIG_NUMBER_RANGES: dict[str, tuple[float, float]] = {
    "quality_lo": (-1000.0, 1000.0),
    "quality_hi": (-1000.0, 1000.0),
}
MAX_CONFIG_TEXT = 256
MAX_TABLES = 4096  # distributions per coding table (a factorised prior's channels, a scale table's entries)
MAX_TABLE_WIDTH = 1 << 16  # symbols per distribution (the shipped Gaussian tables: 3,132)
MAX_TABLE_OFFSET = 1 << 20  # the range coder's escape bound
MAX_SHIFT = 62  # exact-integer layers' power-of-two rescales
MAX_WEIGHT_MAGNITUDE = 1e4  # trained codecs stay below 30 (the shipped ones: 27, a factorised prior's quantile)
_FLOAT_DTYPES = ("F32", "F16", "BF16")
_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}
_DTYPES.update({"I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8})


@dataclass(frozen=True)
class CheckedWeights:
    """What :func:`check_weights_file` read and accepted: metadata, architecture, config, and the model's dtype of
    every tensor the file holds (from a model on the meta device: shapes only, nothing allocated)."""

    metadata: dict[str, str]
    architecture: str
    config: dict
    dtypes: dict[str, torch.dtype]
    tables: dict[str, int]  # prefix of each coding table → the number of distributions it must hold
    float_twins: tuple[str, ...]


def _check_file(path: Path) -> None:
    try:
        info = path.stat()
    except FileNotFoundError:
        raise IcmError(f"{path}: weights file not found") from None
    except OSError as exc:
        raise IcmError(f"{path}: cannot read weights file ({one_line(exc)})") from None
    if not stat.S_ISREG(info.st_mode):
        raise IcmError(f"{path}: not a regular file (a weights file must be one)")
    if info.st_size > MAX_WEIGHTS_BYTES:
        raise IcmError(f"{path}: {info.st_size:,} bytes is too large for codec weights")


def _json_object(path: Path, metadata: dict[str, str], key: str) -> dict:
    text = metadata.get(key, "{}")
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise IcmError(f"{path}: not icmkit codec weights (malformed {key!r} in its metadata)") from None
    if not isinstance(value, dict):
        raise IcmError(f"{path}: not icmkit codec weights ({key!r} in its metadata is not an object)")
    return value


def _check_config(path: Path, config: dict) -> None:
    for key, value in config.items():
        if key in CONFIG_INT_RANGES:
            least, greatest = CONFIG_INT_RANGES[key]
            if type(value) is not int or not least <= value <= greatest:
                raise IcmError(f"{path}: config value {key} must be a whole number in [{least}, {greatest}]")
        elif key in CONFIG_NUMBER_RANGES:
            least, greatest = CONFIG_NUMBER_RANGES[key]
            if type(value) not in (int, float) or not least <= value <= greatest:
                raise IcmError(f"{path}: config value {key} must be a number in [{least:g}, {greatest:g}]")
        elif not isinstance(value, str) or len(value) > MAX_CONFIG_TEXT:
            raise IcmError(
                f"{path}: config value {str(key)[:40]!r} must be text of at most {MAX_CONFIG_TEXT} characters"
            )


def check_weights_file(path: str | Path) -> CheckedWeights:
    """Check a weights file from its header alone (nothing is built or loaded): a known architecture, a config of
    bounded values, exactly the tensors that architecture has (float twins may be left out) with their shapes and
    dtype kinds, and coding tables of bounded sizes. One :class:`IcmError` for whatever is wrong."""
    from icmkit.entropy.factorized import EntropyBottleneck
    from icmkit.entropy.gaussian import GaussianConditional
    from icmkit.models import ARCHITECTURES

    path = Path(path)
    metadata = read_metadata(path)
    architecture = metadata.get("architecture")
    if architecture is None:
        raise IcmError(f"{path}: not an icmkit weights file (no architecture in its metadata)")
    if architecture not in ARCHITECTURES:
        known = ", ".join(ARCHITECTURES)
        raise IcmError(f"{path}: not icmkit codec weights (architecture {architecture[:40]!r}; codecs are {known})")
    config = _json_object(path, metadata, "config")
    _check_config(path, config)
    cls = ARCHITECTURES[architecture]
    try:
        with torch.device("meta"):
            template = cls(**config)
    except (TypeError, ValueError, RuntimeError, KeyError) as exc:
        raise IcmError(f"{path}: not icmkit codec weights (config: {one_line(exc)})") from None
    expected = template.state_dict()
    try:
        with safe_open(str(path), framework="pt") as handle:
            stored = {
                key: (handle.get_slice(key).get_dtype(), list(handle.get_slice(key).get_shape()))
                for key in handle.keys()
            }
    except Exception as exc:  # noqa: BLE001 - safetensors' own error types
        raise IcmError(f"{path}: not a safetensors weights file ({one_line(exc)})") from None
    unexpected = sorted(set(stored) - set(expected))
    missing = sorted(k for k in set(expected) - set(stored) if not template.is_float_twin(k))
    if unexpected or missing:
        keys = missing or unexpected
        raise IcmError(
            f"{path}: not icmkit codec weights ({len(keys)} {'missing' if missing else 'unexpected'} tensors, "
            f"e.g. {keys[0][:80]})"
        )
    tables: dict[str, int] = {}
    for name, module in template.named_modules():
        if isinstance(module, EntropyBottleneck):
            tables[name] = module.channels
        elif isinstance(module, GaussianConditional):
            tables[name] = int(module.scale_table.shape[0])
    dtypes = {}
    for key, (dtype, shape) in stored.items():
        want = expected[key]
        dtypes[key] = want.dtype
        prefix, _, leaf = key.rpartition(".")
        if leaf in TABLE_BUFFERS and prefix in tables:
            _check_table_shape(path, key, leaf, dtype, shape, tables[prefix])
            continue
        if shape != list(want.shape):
            raise IcmError(f"{path}: tensor {key} is shaped {tuple(shape)}, not {tuple(want.shape)}")
        if want.dtype.is_floating_point:
            ok = dtype in _FLOAT_DTYPES
        else:
            ok = _DTYPES.get(dtype) == want.dtype
        if not ok:
            raise IcmError(f"{path}: tensor {key} is {dtype}, not {str(want.dtype).removeprefix('torch.')}")
    return CheckedWeights(metadata, architecture, config, dtypes, tables, tuple(cls.float_twins))


def _check_table_shape(path: Path, key: str, leaf: str, dtype: str, shape: list[int], count: int) -> None:
    # Empty tables are an unfinalised model's (refused when coding is asked of it: NotFinalizedError).
    if leaf == "table_pmf":
        built = len(shape) == 2 and shape[0] == count and 2 <= shape[1] <= MAX_TABLE_WIDTH
        ok = dtype in ("F32", "F64") and (built or shape == [0, 0])
    else:
        ok = dtype in ("I32", "I64") and shape in ([count], [0])
    if not ok or count > MAX_TABLES:
        raise IcmError(f"{path}: coding table {key} is {dtype} {tuple(shape)}, which this model cannot code with")


def _read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - safetensors' own error types
        raise IcmError(f"{path}: not a safetensors weights file ({one_line(exc)})") from None


def check_weight_values(path: str | Path, checked: CheckedWeights, state: dict[str, torch.Tensor]) -> None:
    """Values a model could not code with: non-finite floats, coding tables that are not distributions (negative
    or non-finite probabilities, rows that do not sum to 1, no escape probability, lengths that overrun their rows,
    offsets beyond the coder's range), a scale table that does not strictly increase, power-of-two shifts beyond
    ±:data:`MAX_SHIFT`, float values beyond ±:data:`MAX_WEIGHT_MAGNITUDE`."""
    for key, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise IcmError(f"{path}: tensor {key} holds NaN or infinite values")
        if tensor.is_floating_point() and tensor.numel() and float(tensor.abs().max()) > MAX_WEIGHT_MAGNITUDE:
            raise IcmError(f"{path}: tensor {key} holds values beyond ±{MAX_WEIGHT_MAGNITUDE:g}")
        if key.rpartition(".")[2].startswith("shift") and tensor.numel() and int(tensor.abs().max()) > MAX_SHIFT:
            raise IcmError(f"{path}: tensor {key} holds shifts beyond ±{MAX_SHIFT}")
    for prefix in checked.tables:
        pmf = state[f"{prefix}.table_pmf"].double()
        offset = state[f"{prefix}.table_offset"].long()
        length = state[f"{prefix}.table_length"].long()
        where = f"{path}: coding table {prefix}"
        empty = [t.numel() == 0 for t in (pmf, offset, length)]
        if all(empty):
            continue  # not finalised
        if any(empty):
            raise IcmError(f"{where}: incomplete (some of its tensors are empty)")
        if bool((length < 1).any()) or bool((length >= pmf.shape[1]).any()):
            raise IcmError(f"{where}: lengths outside 1…{pmf.shape[1] - 1}")
        if bool((offset.abs() > MAX_TABLE_OFFSET).any()) or bool((offset + length > MAX_TABLE_OFFSET).any()):
            raise IcmError(f"{where}: offsets beyond ±{MAX_TABLE_OFFSET}")
        if bool((pmf < 0).any()):
            raise IcmError(f"{where}: negative probabilities")
        used = torch.arange(pmf.shape[1]).reshape(1, -1) <= length.reshape(-1, 1)  # the symbols and the escape bin
        sums = (pmf * used).sum(dim=1)
        if bool(((sums - 1).abs() > 1e-3).any()):
            raise IcmError(f"{where}: probabilities that do not sum to 1")
        if bool((pmf.gather(1, length.reshape(-1, 1)) <= 0).any()):
            raise IcmError(f"{where}: no probability for the escape symbol")
        scales = state.get(f"{prefix}.scale_table")
        if scales is not None and (bool((scales <= 0).any()) or bool((scales[1:] <= scales[:-1]).any())):
            raise IcmError(f"{where}: the scale table must be positive and strictly increasing")


def _is_table(key: str) -> bool:
    # Coding tables and scale tables stay float32: they define the integer CDFs bit for bit.
    return key.rsplit(".", 1)[-1] in ("table_pmf", "scale_table")


def read_redundancy_filter(path: str | Path):
    """The :class:`~icmkit.models.redundancy.RedundancyFilter` a ``dicm-re`` weights file holds (a stage-2 run's
    final.safetensors, a stage-3 run's re.safetensors), in eval mode; :class:`IcmError` for any other file."""
    from icmkit.models.redundancy import RedundancyFilter

    meta = read_metadata(path)
    if meta.get("architecture") != RedundancyFilter.architecture:
        held = meta.get("architecture") or "no icmkit model"
        raise IcmError(f"{path}: holds {held}, not a redundancy-elimination module ({RedundancyFilter.architecture})")
    try:
        module = RedundancyFilter(**json.loads(meta["config"]))
        module.load_state_dict(load_file(str(path)))
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise IcmError(f"{path}: damaged {RedundancyFilter.architecture} file ({one_line(exc)})") from None
    return module.eval()
