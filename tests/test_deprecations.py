"""Old public names answer with the new objects and a DeprecationWarning for one release."""

from __future__ import annotations

import importlib

import pytest

from icmkit.bench.benchmark import run_bench
from icmkit.codecs.anchors.pillow_codecs import PillowCodec
from icmkit.entropy.factorized import EntropyBottleneck
from icmkit.models.dicm import DICMFeatureModel


@pytest.mark.parametrize(
    "module, old, new",
    [
        ("icmkit.models", "DICMFeatureCodec", DICMFeatureModel),
        ("icmkit.models.dicm", "DICMFeatureCodec", DICMFeatureModel),
        ("icmkit.entropy", "FactorizedPrior", EntropyBottleneck),
        ("icmkit.entropy.factorized", "FactorizedPrior", EntropyBottleneck),
        ("icmkit.bench.api", "run_bench", run_bench),
    ],
)
def test_a_renamed_object_is_found_under_its_old_name_with_a_warning(module, old, new):
    with pytest.warns(DeprecationWarning, match=f"{old} is deprecated.*use icmkit"):
        assert getattr(importlib.import_module(module), old) is new


def test_unknown_names_still_raise_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        getattr(importlib.import_module("icmkit.models"), "NoSuchThing")  # noqa: B009


def test_a_pillow_codec_subclass_naming_feature_still_works():
    with pytest.warns(DeprecationWarning, match="pil_feature"):

        class OldStyle(PillowCodec):
            name = "old-style-jpeg"
            pil_format = "JPEG"
            feature = "jpg"

    assert OldStyle.pil_feature == "jpg"
