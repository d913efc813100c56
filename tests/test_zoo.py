"""Schema of the shipped weights: every table entry has its file, provenance and matching metadata."""

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
        assert float(meta["lmbda"]) == entry.lmbda
        assert int(meta["steps"]) == entry.steps
        assert {"bpp", "psnr"} <= set(entry.metrics)
