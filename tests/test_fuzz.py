"""A CI-sized run of the fuzzer (:mod:`icmkit.fuzz`): every decoder and every other input surface, seeded cases
at icmkit's default limits, in a worker under a memory cap: no uncaught exception, no hang, no memory failure."""

from __future__ import annotations

import random

from icmkit import fuzz
from icmkit.fuzz import streams, surfaces


def test_seeded_fuzz_run_has_no_uncaught_exception_hang_or_memory_failure():
    cases = 1200
    summary = fuzz.run_fuzz(cases=cases, seed=0, workers=1, timeout=30.0)
    report = summary.as_dict()
    counts = report["outcomes"]
    assert sum(counts.values()) == cases
    assert set(summary.per_target) == set(summary.targets)  # every decoder and surface got cases
    assert set(surfaces.SURFACES) <= set(summary.targets)
    assert counts["decoded"] > 0 and counts["clean"] > 0  # mutations reach both ends
    assert report["limits"]["max_pixels"] == 1 << 26  # the default limits, not lowered ones
    assert 0 < report["peak_rss_mb"] < report["address_space_limit_mb"]
    assert summary.failures == [], "\n".join(
        f"{f['outcome']} {f['target']} case {f['index']} ({f['recipe']}): {f['detail']}\n  "
        + fuzz.reproduce_command(0, summary.targets, f["index"])
        for f in summary.failures
    )


def test_cases_are_reproducible_from_seed_and_index():
    corpus = {"jpeg": [b"\xff\xd8\xff" + bytes(range(200))], "icm-x": [_tiny_icm()]}
    targets = ["jpeg", "icm-x"]
    for index in range(200):
        target = fuzz.target_of(targets, index)
        assert fuzz.mutate(corpus, target, 7, index) == fuzz.mutate(corpus, target, 7, index)
    assert len({fuzz.mutate(corpus, "icm-x", 7, i)[0] for i in range(200)}) > 150


def test_every_surface_comes_up_in_each_cycle_by_its_weight():
    targets = ["jpeg", "icm-mse", "sniff", *surfaces.SURFACES]
    cycle = fuzz.schedule(targets)
    for name in surfaces.SURFACES:
        assert cycle.count(name) == fuzz.runner.SURFACE_WEIGHTS[name]
    assert [fuzz.target_of(targets, i) for i in range(len(cycle))] == cycle


def test_hostile_surface_inputs_are_built_as_described(tmp_path):
    states = surfaces.prepare(["yaml", "bd", "image"], tmp_path)
    seen = {surfaces.surface_case(states, "yaml", 0, i)[0].split(" ")[1] for i in range(200)}
    assert {"billion", "nested"} <= seen
    image = states["image"]["seeds"]["jpeg-progressive"]
    bomb = surfaces._jpeg_scan_bomb(image, 500)
    assert bomb.count(b"\xff\xda") >= 500 and len(bomb) > len(image)
    assert b"acTL" in states["image"]["seeds"]["apng"]
    assert surfaces._edit_apng_frames(states["image"]["seeds"]["apng"], 10**4) != states["image"]["seeds"]["apng"]
    rng = random.Random(0)
    assert streams._hostile_int(rng, 64) >= 0


def _tiny_icm() -> bytes:
    from icmkit import bitstream

    header = bitstream.IcmHeader(codec="icm-x", quality=1, digest=bytes(8), width=64, height=64)
    return bitstream.pack(header, [bytes(range(40)), b"\x01\x02"])
