"""Golden streams: one small stream per shipped learned-codec family must keep decoding to the same bytes.

A failure here means a change altered what existing files decode to. If that change is intended (new
weights, a deliberate coder change), regenerate the vectors with ``python scripts/make_golden.py`` and
review the manifest's diff.
"""

from __future__ import annotations

import json

import pytest
import torch

import icmkit

from helpers import golden as make_golden

REGENERATE = "if intended, regenerate with: python scripts/make_golden.py"
MANIFEST = json.loads((make_golden.GOLDEN_DIR / make_golden.MANIFEST).read_text())


def test_every_shipped_family_has_a_golden_stream_and_no_other():
    assert sorted(MANIFEST["families"]) == sorted(make_golden.golden_families()), REGENERATE


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("family", make_golden.golden_families())
def test_golden_stream_decodes_to_its_recorded_hash(family, threads):
    from icmkit.zoo import family as zoo_family

    entry = MANIFEST["families"].get(family)
    assert entry is not None, f"no golden stream for {family}; {REGENERATE}"
    files = {e.file for e in zoo_family(family)}  # every family ships one weights file
    assert entry["weights_file"] in files, f"{family}'s weights changed; {REGENERATE}"
    data = (make_golden.GOLDEN_DIR / entry["file"]).read_bytes()
    assert make_golden.sha256(data) == entry["stream_sha256"]
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        # The codec is read from the header, as `icm decompress` does (a filter family names its composed codec).
        decoded = icmkit.decompress(data, entry.get("codec"))
    finally:
        torch.set_num_threads(previous)
    shape = list(getattr(decoded, "shape", None) or decoded.tensors["features"].shape)
    assert shape == entry["decoded_shape"]
    assert make_golden.sha256(make_golden.decoded_bytes(decoded)) == entry["decoded_sha256"], (
        f"{family} decodes its golden stream differently with {threads} thread(s); {REGENERATE}"
    )
