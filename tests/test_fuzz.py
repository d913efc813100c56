"""A CI-sized run of benchmarks/fuzz.py: every decoder, 2,000 seeded mutated streams, no crash, no hang."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "fuzz.py"


def _fuzz_module():
    spec = importlib.util.spec_from_file_location("icm_fuzz", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("icm_fuzz", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_seeded_fuzz_run_has_no_uncaught_exception_hang_or_memory_failure():
    fuzz = _fuzz_module()
    summary = fuzz.run_fuzz(cases=2000, seed=0, workers=1, timeout=20.0)
    counts = summary.as_dict()["outcomes"]
    assert sum(counts.values()) == 2000
    assert set(summary.per_target) == set(summary.targets)  # every decoder got cases
    assert counts["decoded"] > 0 and counts["clean"] > 0  # mutations reach both ends
    assert summary.failures == [], "\n".join(
        f"{f['outcome']} {f['target']} case {f['index']} ({f['recipe']}): {f['detail']}\n  "
        + fuzz.reproduce_command(0, summary.targets, f["index"])
        for f in summary.failures
    )


def test_cases_are_reproducible_from_seed_and_index():
    fuzz = _fuzz_module()
    corpus = {"jpeg": [b"\xff\xd8\xff" + bytes(range(200))], "icm-x": [_tiny_icm()]}
    targets = ["jpeg", "icm-x"]
    for index in range(200):
        target = fuzz.target_of(targets, index)
        assert fuzz.mutate(corpus, target, 7, index) == fuzz.mutate(corpus, target, 7, index)
    assert len({fuzz.mutate(corpus, "icm-x", 7, i)[0] for i in range(200)}) > 150


def _tiny_icm() -> bytes:
    from icmkit import bitstream

    header = bitstream.IcmHeader(codec="icm-x", quality=1, digest=bytes(8), width=64, height=64)
    return bitstream.pack(header, [bytes(range(40)), b"\x01\x02"])
