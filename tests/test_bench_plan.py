import math

import numpy as np
import pytest

from icmkit.bench.metrics import ms_ssim, psnr
from icmkit.bench.plan import CodecPlan, parse_codec_spec
from icmkit.errors import IcmError, QualityError, UnknownCodecError

from conftest import synthetic_photo


def test_spec_with_defaults_and_lists():
    plans = parse_codec_spec("jpeg,hevc444:42,37,webp:50")
    assert plans[0] == CodecPlan("jpeg", (5, 10, 20, 30, 50, 75, 90, 95))
    assert plans[1] == CodecPlan("hevc444", (42, 37)) and plans[2] == CodecPlan("webp", (50,))


@pytest.mark.parametrize(
    "spec, error",
    [
        ("nope", UnknownCodecError),
        ("jpeg:500", QualityError),
        ("3,jpeg", IcmError),
        ("jpeg,jpeg:5", IcmError),
        ("jpeg:x", IcmError),
        ("", IcmError),
    ],
)
def test_bad_specs(spec, error):
    with pytest.raises(error):
        parse_codec_spec(spec)


def test_metrics():
    image = synthetic_photo(200, 180)
    noisy = np.clip(image.astype(int) + np.random.default_rng(0).integers(-3, 4, image.shape), 0, 255).astype(np.uint8)
    assert psnr(image, image) == math.inf and 35 < psnr(image, noisy) < 45
    assert ms_ssim(image, image) == pytest.approx(1.0) and 0.9 < ms_ssim(image, noisy) < 1.0
    assert math.isnan(ms_ssim(image[:100], noisy[:100]))
