"""Schema of the shipped weights: every table entry has its file, provenance and matching metadata."""

import hashlib
import json
from pathlib import Path

import numpy as np
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
        meta = read_metadata(entry.path)
        assert meta["architecture"] == entry.architecture
        lmbdas = json.loads(meta.get("lmbdas", "[]"))  # a variable-rate file: one λ per quality
        assert (lmbdas[entry.quality - 1] if lmbdas else float(meta["lmbda"])) == entry.lmbda
        assert int(meta["steps"]) == entry.steps
        if entry.architecture == "restoration-cnn":  # a filter: its figures are BD deltas against its base codec
            wanted = {"bd_psnr_db", "bd_rate_top1_lite0_pct", "bd_rate_top1_lite1_pct", "bd_rate_top1_lite2_pct"}
        else:
            wanted = {"bpp", "psnr"} if entry.kind == "pixel" else {"bpp", "top1_lite0"}
        assert wanted <= set(entry.metrics)
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


PACKAGE_LIMIT = 60 * 2**20  # what the package may weigh in all (PyPI's default wheel limit is 100 MB)
FILE_LIMIT = 25 * 2**20


def test_the_package_fits_its_size_budget():
    """Everything installed under icmkit/ (an upper bound of the wheel, which compresses it) ≤ 60 MB; no
    single file over 25 MB."""
    import icmkit

    files = [f for f in Path(icmkit.__file__).parent.rglob("*") if f.is_file() and "__pycache__" not in f.parts]
    sizes = {f: f.stat().st_size for f in files}
    total = sum(sizes.values())
    assert total <= PACKAGE_LIMIT, f"the package weighs {total / 2**20:.1f} MiB > 60 MB"
    big = [f"{f.name} ({size / 2**20:.1f} MiB)" for f, size in sizes.items() if size > FILE_LIMIT]
    assert not big, f"files over 25 MB: {big}"


@pytest.mark.parametrize("name", families())
def test_every_family_is_one_file_with_its_digest(name):
    """A codec family is one variable-rate file; a restoration family may hold one filter per quality band, each
    its own file whose band the table states and the file's config agrees with."""
    entries = family(name)
    assert all(e.sha256 for e in entries)
    if len({e.file for e in entries}) == 1:
        return
    assert entries[0].architecture == "restoration-cnn", f"{name} ships several weight files"
    from icmkit.weights import load_weights

    bands = [tuple(e.metrics["quality_band"]) for e in entries]
    assert bands == sorted(bands) and all(lo < hi for lo, hi in bands)
    for entry, (lo, hi) in zip(entries, bands):
        net, _ = load_weights(entry.path)
        assert (net.config["quality_lo"], net.config["quality_hi"]) == (lo, hi)


def test_no_weights_file_is_left_outside_the_tables():
    listed = {e.file for name in families() for e in family(name)}
    shipped = {p.name for p in (ZOO_DIR / "weights").glob("*.safetensors")}
    assert shipped == listed, f"unlisted weight files: {sorted(shipped - listed)}"


def test_a_corrupt_shipped_file_is_refused_cleanly(tmp_path, tiny_vr_weights):
    from types import SimpleNamespace

    from icmkit.codecs.learned import VariableRatePixelCodec
    from icmkit.errors import WeightsFileError

    path = tmp_path / "shipped.safetensors"
    path.write_bytes(Path(tiny_vr_weights).read_bytes())
    codec = VariableRatePixelCodec("icm-check", path, 4)
    codec.expect_sha256([SimpleNamespace(path=path, sha256=hashlib.sha256(b"another file").hexdigest())])
    with pytest.raises(WeightsFileError, match="corrupt or replaced"):
        codec.encode(np.zeros((8, 8, 3), np.uint8), 2)
    good = VariableRatePixelCodec("icm-check", path, 4)
    good.expect_sha256([SimpleNamespace(path=path, sha256=hashlib.sha256(path.read_bytes()).hexdigest())])
    assert good.encode(np.zeros((8, 8, 3), np.uint8), 2)


def test_streams_of_the_retired_v1_files_fail_with_the_other_weights_message():
    from icmkit import get_codec
    from icmkit.errors import WeightsMismatchError

    legacy = Path(__file__).parent / "data" / "legacy" / "icm-mse-v1-q4.icm"
    with pytest.raises(WeightsMismatchError, match="other weights"):
        get_codec("icm-mse").decode(legacy.read_bytes())


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
    # The 0.03–0.5 bpp span is a target the evidence page reports as missed (v3: 0.052–0.298, reaching 87.5 %
    # top-1 at its top, above everything v2 reached at 0.81 bpp); what must hold for any shipped model: rates rise
    # with quality over a wide range (here over five times), and no gain unit has collapsed.
    assert bpp == sorted(bpp) and bpp[-1] / bpp[0] >= 5, f"rate points {bpp}"
    top1 = [e.metrics["top1_lite0"] for e in entries]
    assert min(top1) >= 50, f"a collapsed rate point (dev200 top-1 {top1})"
    from safetensors import safe_open

    with safe_open(str(entries[0].path), framework="pt") as handle:
        assert not any(key.startswith(("h_s.", "context.", "entropy_parameters.")) for key in handle.keys())
