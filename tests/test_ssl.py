"""MoCo v2 with semantic-guided crops (icmkit.ssl, ``architecture: moco-v2``): the parts against hand-computed
values, then the smoke recipe end to end — export, contact sheet, exact resume — and two gloo ranks."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from icmkit.errors import ConfigError
from icmkit.ssl.contact_sheet import BOX_COLOUR, write_contact_sheet
from icmkit.ssl.crops import WHOLE_IMAGE, ContrastiveViews, activation_boxes, sample_crop
from icmkit.ssl.encoder import EmbeddingEncoder
from icmkit.ssl.moco import MoCo, NegativeQueue, info_nce
from icmkit.ssl.shuffle import BatchShuffle
from icmkit.tasks.classification import load_classifier
from icmkit.train.config import load_config

from helpers.cli import icm

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "smoke-ssl.yaml"
WORKER = Path(__file__).with_name("ddp_ssl_worker.py")
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


class TinyClassifier(nn.Module):
    """The timm surface the encoder reads (forward_features, forward_head, num_features, get_classifier), tiny."""

    num_features = 8

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.classifier = nn.Linear(8, 5)

    def forward_features(self, x):
        return torch.relu(self.bn(self.conv(x)))

    def forward_head(self, x, pre_logits=False):
        x = x.mean(dim=(2, 3))
        return x if pre_logits else self.classifier(x)

    def get_classifier(self):
        return self.classifier


def tiny_encoder(bn_groups: int = 1) -> EmbeddingEncoder:
    torch.manual_seed(0)
    return EmbeddingEncoder(TinyClassifier(), (0.5,) * 3, (0.5,) * 3, projection_dim=4, bn_groups=bn_groups)


# -- the parts --------------------------------------------------------------------------------------
def test_info_nce_equals_a_hand_computation():
    query = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    key = torch.tensor([[0.6, 0.8], [0.0, 1.0]])
    negatives = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
    loss, logits = info_nce(query, key, negatives, temperature=0.5)
    # query 1: similarities 0.6 (its key), 0, −1 → logits 1.2, 0, −2; query 2: 1, 1, 0 → 2, 2, 0
    first = -math.log(math.exp(1.2) / (math.exp(1.2) + math.exp(0) + math.exp(-2)))
    second = -math.log(math.exp(2) / (2 * math.exp(2) + math.exp(0)))
    assert torch.allclose(logits, torch.tensor([[1.2, 0.0, -2.0], [2.0, 2.0, 0.0]]))
    assert loss.item() == pytest.approx((first + second) / 2, rel=1e-6)


def test_momentum_update_follows_the_formula_and_copies_the_statistics():
    moco = MoCo(tiny_encoder(), queue_size=8, momentum=0.9)
    with torch.no_grad():
        for parameter in moco.query.trunk.model.conv.parameters():
            parameter.add_(1.0)
        moco.query(torch.rand(4, 3, 8, 8))  # moves the query's running BN statistics
    before = {k: v.clone() for k, v in moco.key.module.state_dict().items()}
    moco.update_key()
    for name, query_value in moco.query.named_parameters():
        expected = 0.9 * before[name] + 0.1 * query_value  # key ← m·key + (1 − m)·query
        assert torch.allclose(moco.key.module.get_parameter(name), expected, atol=1e-6), name
    for name, query_buffer in moco.query.named_buffers():
        assert torch.equal(moco.key.module.get_buffer(name), query_buffer), name
    assert not any(p.requires_grad for p in moco.key.parameters())
    statistics = moco.key.module.trunk.model.bn.running_mean.clone()
    moco.key(torch.rand(4, 3, 8, 8))  # batch statistics, without moving the key's running ones
    assert torch.equal(moco.key.module.trunk.model.bn.running_mean, statistics)


def test_queue_wraps_and_holds_normalised_keys():
    queue = NegativeQueue(size=8, dim=4)
    assert torch.allclose(queue.keys.norm(dim=1), torch.ones(8))
    batches = [nn.functional.normalize(torch.randn(4, 4), dim=1) for _ in range(3)]
    pointers = []
    for batch in batches:
        queue.push(batch)
        pointers.append(int(queue.pointer))
    assert pointers == [4, 0, 4]
    assert torch.equal(queue.keys, torch.cat([batches[2], batches[1]]))  # the oldest batch was overwritten
    assert torch.allclose(queue.keys.norm(dim=1), torch.ones(8))
    with pytest.raises(ValueError, match="divide"):
        queue.push(torch.randn(3, 4))


def test_encoder_normalises_each_bn_group_by_its_own_statistics():
    grouped, whole = tiny_encoder(bn_groups=2), tiny_encoder(bn_groups=1)
    images = torch.rand(4, 3, 8, 8)
    embeddings = grouped(images)
    assert torch.allclose(embeddings.norm(dim=1), torch.ones(4))
    assert torch.allclose(embeddings[:2], whole(images[:2]), atol=1e-6)
    assert not torch.allclose(embeddings[:2], whole(images)[:2], atol=1e-4)


def test_batch_shuffle_groups_keys_at_random_and_returns_them_in_order():
    samples = torch.eye(4)  # one-hot: a group's sum names its members

    def group_sums(x):
        return torch.cat([chunk.sum(0, keepdim=True).expand_as(chunk) for chunk in x.chunk(2)])

    partners = set()
    for seed in range(8):
        rows = BatchShuffle().encode(group_sums, samples, torch.Generator().manual_seed(seed))
        assert (rows.diagonal() == 1).all() and (rows.sum(dim=1) == 2).all()  # each came back from its own group
        partners.add(int(rows[0, 1:].argmax()) + 1)
    assert len(partners) > 1  # sample 0 is not always grouped with sample 1, as the queries are


def test_activation_box_of_a_bright_square():
    maps = torch.zeros(3, 4, 8, 8)
    maps[0, :, 2:5, 3:6] = 1.0  # rows 2–4, columns 3–5 of an 8×8 map
    maps[1, 1, 6:8, 0:2] = 5.0  # one channel, the bottom-left corner
    maps[2] += 0.3  # flat: nothing stands out
    boxes = activation_boxes(maps, (64, 64), threshold=0.1)
    cell = 1 / 8
    for got, want in zip(boxes[:2], [(3 * cell, 2 * cell, 6 * cell, 5 * cell), (0, 6 * cell, 2 * cell, 1)]):
        want = torch.tensor(want)
        assert (got[:2] <= want[:2]).all() and (got[2:] >= want[2:]).all()  # the box holds the square…
        assert ((got - want).abs() < cell / 2).all()  # …and bilinear upsampling widens it by under half a cell
    assert boxes[2].tolist() == list(WHOLE_IMAGE)


def test_beta_crops_lie_inside_the_image_and_concentrate_in_the_box():
    rng = np.random.default_rng(0)
    height, width, box = 120, 200, (0.6, 0.1, 0.9, 0.4)

    def share_centred_in_box(guide) -> float:
        inside = 0
        for _ in range(2000):
            top, left, h, w = sample_crop(rng, height, width, guide, alpha=0.6)
            assert h >= 1 and w >= 1 and top >= 0 and left >= 0 and top + h <= height and left + w <= width
            x, y = (left + w / 2) / width, (top + h / 2) / height
            inside += box[0] <= x <= box[2] and box[1] <= y <= box[3]
        return inside / 2000

    assert share_centred_in_box(box) > 0.6
    assert share_centred_in_box(WHOLE_IMAGE) < 0.2  # the box is 9 % of the image


def test_views_are_a_function_of_their_seed():
    generator = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, (3, 50 + 10 * i, 70), dtype=torch.uint8, generator=generator) for i in range(3)]
    views = ContrastiveViews(images, size=32)
    state = torch.get_rng_state()
    queries, keys = views.pairs([0, 2], seed=(0, 5, 1, 0))
    assert torch.equal(torch.get_rng_state(), state)  # the global stream is left as it was
    assert queries.shape == keys.shape == (2, 3, 32, 32) and 0 <= queries.min() and queries.max() <= 1
    assert not torch.equal(queries, keys)
    again = views.pairs([0, 2], seed=(0, 5, 1, 0))
    assert torch.equal(again[0], queries) and torch.equal(again[1], keys)
    assert not torch.equal(views.pairs([0, 2], seed=(0, 6, 1, 0))[0], queries)


def test_contact_sheet_draws_each_box(tmp_path):
    images = [np.full((40, 80, 3), 200, np.uint8), torch.full((3, 60, 30), 50, dtype=torch.uint8)]
    path = write_contact_sheet(images, [(0.25, 0.25, 0.75, 0.75), WHOLE_IMAGE], tmp_path / "crops.png", thumbnail=40)
    sheet = np.asarray(Image.open(path).convert("RGB"))
    assert sheet.shape == (40, 80, 3)  # two cells of 40²
    red = (sheet == BOX_COLOUR).all(axis=-1)
    assert red[15, 10:30].all() and red[24, 10:30].all()  # 80×40 → 40×20 at (0, 10): box (10, 15)–(29, 24)
    assert not red[20, 20] and (sheet[20, 20] == 200).all()
    assert red[0, 50:70].all() and red[39, 50:70].all()  # 30×60 → 20×40 at (50, 0): the whole thumbnail


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("ssl_queue=18", "ssl_queue (18) must be a multiple of batch_size (4)"),
        ("ssl_bn_groups=3", "ssl_bn_groups (3) must divide batch_size (4)"),
        ("crop=48", "crop must be a positive multiple of 32"),
        ("ssl_momentum=1", "ssl_momentum and ssl_box_threshold must be in [0, 1)"),
        ("init_from=x.safetensors", "starts from backbone_weights"),
    ],
)
def test_bad_moco_settings_are_refused(override, fragment):
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        load_config(SMOKE, [override])


# -- the smoke recipe through `icm train` -------------------------------------------------------------
def train_smoke(out: Path, *overrides: str) -> None:
    result = icm("train", "--config", SMOKE, f"out={out}", "threads=1", *overrides, env=ONE_THREAD)
    assert result.returncode == 0, result.stderr[-3000:]


def read_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("ssl") / "run"
    train_smoke(run)
    return run


@pytest.mark.slow
def test_smoke_run_exports_a_classifier_and_draws_its_boxes(smoke_run):
    weights = smoke_run / "final.safetensors"
    trained = load_classifier("tf_efficientnet_lite0", weights).model.state_dict()
    initial = load_classifier("tf_efficientnet_lite0", None).model.state_dict()
    assert not torch.equal(trained["conv_stem.weight"], initial["conv_stem.weight"])
    assert torch.equal(trained["classifier.weight"], initial["classifier.weight"])  # MoCo leaves it untrained
    with safe_open(str(weights), framework="pt") as handle:
        meta = handle.metadata()
    assert meta["architecture"] == "moco-v2" and meta["step"] == "6" and meta["backbone"] == "tf_efficientnet_lite0"

    assert Image.open(smoke_run / "crops.png").format == "PNG"
    records = read_log(smoke_run)
    assert [r["step"] for r in records if r.get("event") == "boxes refreshed"] == [2, 4]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4, 5, 6]
    assert all(math.isfinite(r["loss"]) for r in records if "loss" in r)

    checkpoint = load_file(str(smoke_run / "checkpoint.safetensors"))
    assert (checkpoint["boxes"] != torch.tensor(WHOLE_IMAGE)).any()  # boxes that a resume must restore
    assert int(checkpoint["model.queue.pointer"]) == 6 * 4 % 16
    assert torch.allclose(checkpoint["model.queue.keys"].norm(dim=1), torch.ones(16))


@pytest.mark.slow
def test_resume_is_exact(smoke_run, tmp_path):
    run = tmp_path / "run"
    train_smoke(run, "stop_at=3")  # past the first box refresh: its boxes must come back from the checkpoint
    assert json.loads((run / "checkpoint.json").read_text())["step"] == 3
    train_smoke(run)
    assert any(r.get("event") == "resumed" and r["step"] == 3 for r in read_log(run))
    for name in ("final.safetensors", "checkpoint.safetensors"):
        resumed, straight = load_file(str(run / name)), load_file(str(smoke_run / name))
        assert resumed.keys() == straight.keys()
        assert [k for k in straight if not torch.equal(resumed[k], straight[k])] == [], name


# -- two gloo ranks -------------------------------------------------------------------------------
@pytest.mark.slow
def test_two_gloo_ranks_hold_identical_key_encoders_and_queues(tmp_path):
    dump, run = tmp_path / "dump", tmp_path / "run"
    dump.mkdir()
    overrides = [f"out={run}", "batch_size=2", "ssl_bn_groups=1", "steps=3", "ssl_box_warmup=1", "ssl_box_every=1"]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(WORKER)]
    result = subprocess.run(
        [*command, str(SMOKE), str(dump), *overrides, "threads=1"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **ONE_THREAD},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = (load_file(str(dump / f"rank{r}.safetensors")) for r in (0, 1))
    assert rank0.keys() == rank1.keys()
    assert [k for k in rank0 if not torch.equal(rank0[k], rank1[k])] == []  # key encoder, queue, query encoder
    assert bool(rank0["shuffle.returned_own"]) and bool(rank0["shuffle.mixed"])  # keys shuffled across ranks
    assert int(rank0["queue.pointer"]) == 3 * 4 % 16  # three global batches of 2 × 2 keys
    assert torch.allclose(rank0["queue.keys"].norm(dim=1), torch.ones(16))
    initial = load_classifier("tf_efficientnet_lite0", None).model.state_dict()
    key_stem = rank0["key.module.trunk.model.conv_stem.weight"]
    assert not torch.equal(key_stem, initial["conv_stem.weight"])  # the key encoder did move

    records = read_log(run)
    assert [r["step"] for r in records if r.get("event") == "boxes refreshed"] == [1, 2]
    assert json.loads((run / "checkpoint.json").read_text())["world_size"] == 2
