"""Tiled analysis and synthesis: same values as the full frame, no seams, pixels independent of threads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from icmkit.codecs import get_codec
from icmkit.codecs.learned import LearnedPixelCodec
from icmkit.image import image_to_tensor
from icmkit.models import MeanScaleHyperprior
from icmkit.models.tiling import Halo, split_axis, tile_grid
from icmkit.threads import single_threaded
from icmkit.weights import load_weights
from icmkit.zoo import family

from conftest import synthetic_photo

SCALE = 16  # pixels per latent sample


def small_model(tile: int = 4) -> MeanScaleHyperprior:
    """Random weights, small widths, 64-px tiles: many tiles on a small image."""
    torch.manual_seed(1)
    model = MeanScaleHyperprior(N=16, M=24).eval()
    model.synthesis_tile = model.analysis_tile = tile
    return model


def shipped_model() -> MeanScaleHyperprior:
    """A private copy of the shipped q3 model (tests may change its tile sizes)."""
    entry = next(e for e in family("icm-mse") if e.quality == 3)
    return load_weights(entry.path)[0]


def latent_of(model: MeanScaleHyperprior, height: int, width: int) -> torch.Tensor:
    """A realistic ŷ: the rounded analysis of a synthetic photo."""
    with torch.no_grad():
        return torch.round(model.g_a(image_to_tensor(synthetic_photo(height, width, seed=3)).unsqueeze(0)))


def full_and_tiled(model: MeanScaleHyperprior, y_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad(), single_threaded():
        full = model.g_s(y_hat)
    with torch.no_grad():
        return full, model.synthesise(y_hat)


def to_levels(x: torch.Tensor) -> torch.Tensor:
    return torch.round(x.clamp(0, 1) * 255)


def boundary_band(y_hat: torch.Tensor, model: MeanScaleHyperprior, width: int = 3) -> torch.Tensor:
    """Mask of output pixels within ``width`` of an internal tile boundary."""
    height, latent_width = y_hat.shape[-2:]
    mask = torch.zeros(height * SCALE, latent_width * SCALE, dtype=torch.bool)
    halo = model.synthesis_halo
    for span in split_axis(height, model.synthesis_tile, halo)[1:]:
        mask[span.start * SCALE - width : span.start * SCALE + width, :] = True
    for span in split_axis(latent_width, model.synthesis_tile, halo)[1:]:
        mask[:, span.start * SCALE - width : span.start * SCALE + width] = True
    return mask


@pytest.fixture(scope="module")
def shipped_pair():
    """Shipped model; ŷ of a 528×1040 photo: 2×3 tiles of its own 32-sample tile size."""
    model = shipped_model()
    y_hat = latent_of(model, 33 * SCALE, 65 * SCALE)
    return model, y_hat, *full_and_tiled(model, y_hat)


@pytest.fixture(scope="module")
def small_pair():
    model = small_model()
    y_hat = latent_of(model, 13 * SCALE, 18 * SCALE)  # 4×5 tiles
    return model, y_hat, *full_and_tiled(model, y_hat)


def test_tiles_are_near_equal_and_depend_on_the_size_only():
    spans = split_axis(33, 16, Halo(1, 2))
    assert [(s.start, s.stop, s.grown_start, s.grown_stop) for s in spans] == [
        (0, 11, 0, 13),
        (11, 22, 10, 24),
        (22, 33, 21, 33),
    ]
    assert len(tile_grid(33, 65, 32, Halo(1, 2))) == 2 * 3
    assert len(tile_grid(32, 64, 32, Halo(1, 2))) == 1 * 2


def _reached(grad: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns where a gradient is non-zero."""
    touched = grad.abs().sum(dim=(0, 1)) > 0
    return torch.nonzero(touched.any(1)).flatten().numpy(), torch.nonzero(touched.any(0)).flatten().numpy()


def test_synthesis_halo_is_exactly_the_receptive_field():
    model = small_model()
    y = torch.randn(1, 24, 9, 9, requires_grad=True)
    model.g_s(y)[..., 4 * SCALE : 5 * SCALE, 4 * SCALE : 5 * SCALE].sum().backward()
    rows, cols = _reached(y.grad)
    halo = model.synthesis_halo
    assert halo == Halo(1, 2)  # four 5×5 stride-2 deconvolutions, walked back from a 16×16 block
    for reached in (rows, cols):
        assert (reached.min(), reached.max()) == (4 - halo.before, 4 + halo.after)


def test_analysis_halo_covers_the_receptive_field_in_whole_samples():
    model = small_model()
    x = torch.randn(1, 3, 9 * SCALE, 9 * SCALE, requires_grad=True)
    model.g_a(x)[..., 4, 4].sum().backward()
    halo = model.analysis_halo
    assert halo == Halo(2, 1)  # 30 pixels before, 14 after, rounded up to whole 16-pixel samples
    for reached in _reached(x.grad):
        assert (4 - halo.before) * SCALE <= reached.min() < (5 - halo.before) * SCALE
        assert (4 + halo.after) * SCALE <= reached.max() < (5 + halo.after) * SCALE


@pytest.mark.parametrize("pair", ["small_pair", "shipped_pair"])
def test_tiled_synthesis_matches_the_full_frame(pair, request):
    model, y_hat, full, tiled = request.getfixturevalue(pair)
    assert len(tile_grid(*y_hat.shape[-2:], model.synthesis_tile, model.synthesis_halo)) >= 6
    assert (full - tiled).abs().max() < 1e-4
    levels = (to_levels(full) - to_levels(tiled)).abs()
    assert levels.max() <= 1 and (levels > 0).float().mean() < 1e-3


@pytest.mark.parametrize("pair", ["small_pair", "shipped_pair"])
def test_no_seams_on_tile_boundaries(pair, request):
    model, y_hat, full, tiled = request.getfixturevalue(pair)
    band = boundary_band(y_hat, model)
    assert (full - tiled).abs()[..., band].max() < 1e-5
    # The check can see seams: without a halo the same boundaries are visibly off.
    model.synthesis_halo, halo = Halo(0, 0), model.synthesis_halo
    try:
        with torch.no_grad():
            seamed = model.synthesise(y_hat)
    finally:
        model.synthesis_halo = halo
    assert (full - seamed).abs()[..., band].max() > 1e-3


def _decode_everywhere(codec: LearnedPixelCodec, streams: list[bytes]) -> list[np.ndarray]:
    """Decodes with 1, 2, 3 torch threads and pool sizes, alone and in a batch."""
    model = codec.model(codec.quality.default)[0]
    threads = torch.get_num_threads()
    decoded = []
    try:
        for count in (1, 2, 3):
            torch.set_num_threads(count)
            decoded += [codec.decode(streams[0]), codec.decode_batch(streams)[0]]
            model.decode_workers = 4 - count  # pool size set apart from the thread count
            decoded.append(codec.decode(streams[0]))
            model.decode_workers = None
    finally:
        torch.set_num_threads(threads)
        model.decode_workers = None
    assert torch.get_num_threads() == threads
    return decoded


def test_multi_tile_decoding_is_bit_identical_across_threads_pools_and_batching(tiny_weights):
    codec = LearnedPixelCodec.from_weights_file(tiny_weights, name="icm-tiny", quality=1)
    codec.model(1)[0].synthesis_tile = 2  # 32-px tiles: 6×8 tiles on a 192×256 image
    streams = [codec.encode(synthetic_photo(150, 200, seed=s), 1) for s in (1, 2)]
    decoded = _decode_everywhere(codec, streams)
    assert all(np.array_equal(decoded[0], other) for other in decoded[1:])


def test_shipped_multi_tile_decoding_is_bit_identical_across_threads():
    codec = get_codec("icm-mse")
    streams = [codec.encode(synthetic_photo(520, 520, seed=s)) for s in (1, 2)]  # 2×2 tiles
    decoded = _decode_everywhere(codec, streams)
    assert all(np.array_equal(decoded[0], other) for other in decoded[1:])


@pytest.mark.parametrize("make_model", [small_model, shipped_model])
def test_tiled_analysis_gives_the_untiled_symbols(make_model, one_torch_thread):
    model = make_model()
    model.analysis_tile = 4  # 64-px tiles: 4×5 tiles on a 256×320 photo
    x = image_to_tensor(synthetic_photo(16 * SCALE, 20 * SCALE, seed=4)).unsqueeze(0)  # multiple of the hyper stride 64
    with torch.no_grad():
        full, tiled = model.g_a(x), model.analyse(x)
        means = model.h_s(torch.round(model.h_a(full))).chunk(2, 1)[1]  # any fixed means do for this check
    assert (full - tiled).abs().max() < 1e-4 * max(1.0, full.abs().max().item())
    # Symbols round y − μ: a value within float rounding of a half-integer may round the other way.
    flips = (torch.round(full - means) - torch.round(tiled - means)).abs()
    assert flips.max() <= 1 and (flips > 0).float().mean() < 1e-3


def test_large_images_are_transformed_in_bounded_tiles(one_torch_thread):
    model = small_model()
    model.update()
    seen = {"g_a": [], "g_s": []}
    for name in seen:
        getattr(model, name).register_forward_pre_hook(lambda _, args, name=name: seen[name].append(args[0].shape))
    side = 20 * SCALE
    coded = model.compress(image_to_tensor(synthetic_photo(side, side)).unsqueeze(0))
    model.decompress(coded["strings"], coded["shape"])
    reach = (model.analysis_tile + model.analysis_halo.before + model.analysis_halo.after) * SCALE
    assert len(seen["g_a"]) == 25 and max(s[-1] for s in seen["g_a"]) <= reach
    reach = model.synthesis_tile + model.synthesis_halo.before + model.synthesis_halo.after
    assert len(seen["g_s"]) == 25 and max(s[-1] for s in seen["g_s"]) <= reach
