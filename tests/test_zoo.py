"""Schema of the shipped weights: every table entry has its file, provenance and matching metadata."""

import hashlib
import json

import pytest

from icmkit.weights import read_metadata
from icmkit.zoo import ZOO_DIR, families, family


def test_default_family_ships_weights():
    assert "icm-mse" in families()
    assert family("icm-mse"), "icm-mse has no weights file in the package"


@pytest.mark.parametrize("name", families())
def test_every_entry_is_complete_and_matches_its_file(name):
    rows = json.loads((ZOO_DIR / f"{name}.json").read_text())["entries"]
    entries = family(name)
    assert len(entries) == len(rows), "a table row names a weights file that is missing"
    for entry in entries:
        assert entry.command.startswith("python -m icmkit.train") and entry.data and entry.steps > 0
        assert entry.path.stat().st_size <= 20 * 2**20
        meta = read_metadata(entry.path)
        assert meta["architecture"] == entry.architecture
        lmbdas = json.loads(meta.get("lmbdas", "[]"))  # a variable-rate file: one λ per quality
        assert (lmbdas[entry.quality - 1] if lmbdas else float(meta["lmbda"])) == entry.lmbda
        assert int(meta["steps"]) == entry.steps
        assert (
            {"bpp", "psnr"} <= set(entry.metrics)
            if entry.kind == "pixel"
            else {"bpp", "top1_lite0"} <= set(entry.metrics)
        )
        assert "/root/" not in json.dumps(meta) and "/home/" not in json.dumps(meta), "machine paths in metadata"
        if entry.sha256:
            assert hashlib.sha256(entry.path.read_bytes()).hexdigest() == entry.sha256


@pytest.mark.parametrize("name", ["icm-mse", "icm-mmd"])
def test_shipped_families_span_the_rate_range(name):
    entries = family(name)
    assert len(entries) >= 4
    assert [e.quality for e in entries] == list(range(1, len(entries) + 1))
    assert [e.lmbda for e in entries] == sorted({e.lmbda for e in entries})
    bpp = [e.metrics["bpp"] for e in entries]
    assert bpp == sorted(bpp), "measured rate must grow with the quality index"
    assert bpp[0] <= 0.2 and bpp[-1] >= 0.7, f"rate points {bpp} do not span roughly 0.1–1.0 bpp"
    assert all((e.beta > 0) == (name == "icm-mmd") for e in entries)
    for entry in entries:
        assert float(read_metadata(entry.path)["beta"]) == entry.beta


def test_mmd_ablation_has_the_mse_familys_budget():
    """Same architecture, λ, steps and data: the MMD term is the only difference."""
    pairs = list(zip(family("icm-mse"), family("icm-mmd"), strict=True))
    for mse, mmd in pairs:
        assert (mse.architecture, mse.lmbda, mse.steps, mse.data) == (mmd.architecture, mmd.lmbda, mmd.steps, mmd.data)


@pytest.mark.parametrize("name", ["icm-mse", "icm-mmd"])
def test_every_shipped_rate_point_codes_a_photo(name, photo):
    from icmkit import get_codec, psnr

    codec = get_codec(name)
    sizes = []
    for entry in family(name):
        data = codec.encode(photo, entry.quality)
        decoded = codec.decode(data)
        assert decoded.shape == photo.shape and psnr(photo, decoded) > 20
        sizes.append(len(data))
    assert sizes == sorted(sizes), "higher quality ids must spend more bytes"


def test_feature_family_is_one_slim_variable_rate_file():
    entries = family("icm-dicm-lite0")
    assert len(entries) >= 5, "icm-dicm-lite0 needs at least five rate points"
    assert len({e.file for e in entries}) == 1 and all(e.kind == "feature" and e.sha256 for e in entries)
    assert entries[0].path.stat().st_size <= 8 * 2**20
    bpp = [e.metrics["bpp"] for e in entries]
    # The 0.03–0.5 bpp span is a target the README reports as missed at the low end (0.075); what must
    # hold for any shipped model: rates rise with quality over a wide range, and no gain unit has collapsed.
    assert bpp == sorted(bpp) and bpp[-1] / bpp[0] >= 8 and bpp[-1] >= 0.5, f"rate points {bpp}"
    top1 = [e.metrics["top1_lite0"] for e in entries]
    assert min(top1) >= 50, f"a collapsed rate point (dev200 top-1 {top1})"
    from safetensors import safe_open

    with safe_open(str(entries[0].path), framework="pt") as handle:
        assert not any(key.startswith(("h_s.", "context.", "entropy_parameters.")) for key in handle.keys())
