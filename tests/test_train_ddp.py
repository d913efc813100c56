"""Training under torchrun: 2 gloo processes on the CPU must end with identical weights, quantiles included.

The factorised prior's quantiles are trained by the auxiliary loss only: left to DDP they error as unused
parameters or (torch 2.14) delay the gradient all-reduce past the main optimiser step, and every main
weight differs between the ranks after a few steps — which this test catches.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from icmkit.models import build_model

from train_helpers import make_image_folder, tiny_yaml

WORKER = Path(__file__).with_name("ddp_train_worker.py")


def torchrun(config: Path, dump: Path, *overrides: str) -> None:
    dump.mkdir(exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(WORKER),
        str(config),
        str(dump),
        *overrides,
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert result.returncode == 0, result.stderr[-3000:]


def rank_parameters(dump: Path) -> tuple[dict, dict]:
    return load_file(str(dump / "rank0.safetensors")), load_file(str(dump / "rank1.safetensors"))


def assert_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different


@pytest.mark.slow
def test_two_gloo_ranks_end_identical_and_train_the_quantiles(tmp_path):
    data = make_image_folder(tmp_path / "images")
    run = tmp_path / "run"
    config = tiny_yaml(tmp_path / "tiny.yaml", data, run, steps=3, threads=1)
    torchrun(config, tmp_path / "first")
    rank0, rank1 = rank_parameters(tmp_path / "first")
    assert_identical(rank0, rank1)
    initial = build_model("mean-scale-hyperprior", N=8, M=8).entropy_bottleneck.quantiles.detach()
    assert not torch.equal(rank0["entropy_bottleneck.quantiles"], initial)  # the auxiliary loss did train them

    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3]  # rank 0 alone logs
    assert all(np.isfinite(r["loss"]) for r in records if "loss" in r)
    meta = json.loads((run / "checkpoint.json").read_text())
    crops0, crops1 = meta["rng.numpy"]["dataset"], meta["rng.numpy.rank1"]["dataset"]
    assert meta["world_size"] == 2 and crops0 != crops1  # ranks crop differently

    torchrun(config, tmp_path / "resumed", "steps=5")  # resuming under DDP keeps the ranks in step
    resumed0, resumed1 = rank_parameters(tmp_path / "resumed")
    assert_identical(resumed0, resumed1)
    assert json.loads((run / "checkpoint.json").read_text())["step"] == 5
    assert any(
        r.get("event") == "resumed" and r["step"] == 3 and "random_streams" not in r
        for r in (json.loads(line) for line in (run / "log.jsonl").read_text().splitlines())
    )
