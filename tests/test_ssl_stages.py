"""DICM's four training stages chained as ``icm train`` recipes: the smoke configs run in order in a tmp folder
(stage 1 MoCo → 2 RE alone → 3 MoCo + RE → 4 codec), each from the previous one's output; what each stage must
and must not change; the stage-4 codec codes; the RE files are checked against config and backbone."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from icmkit.backbones import split_classifier
from icmkit.codecs.feature import FeatureCodec
from icmkit.data import SAMPLES_DIR
from icmkit.errors import ConfigError, WeightsMismatchError
from icmkit.image import load_rgb
from icmkit.losses.feature import FeatureObjective
from icmkit.losses.redundancy import redundancy_terms
from icmkit.models.redundancy import RedundancyFilter
from icmkit.ssl.filtered import FilteredEmbeddingEncoder
from icmkit.ssl.moco import MoCo
from icmkit.tasks.classification import load_classifier
from icmkit.train.config import config_from_yaml, load_config
from icmkit.train.trainers import make_trainer
from icmkit.weights import read_redundancy_filter

ROOT = Path(__file__).resolve().parents[1]
STAGES = {
    "moco": ROOT / "configs" / "smoke-ssl.yaml",
    "re": ROOT / "configs" / "smoke-ssl-re.yaml",
    "joint": ROOT / "configs" / "smoke-ssl-joint.yaml",
    "codec": ROOT / "configs" / "smoke-ssl-codec.yaml",
}
# Fields naming run folders or files of earlier runs: the smoke configs give them relative to the working directory.
PATH_FIELDS = ("out", "backbone_weights", "ssl_re_from", "re_from")
BACKBONE, SPLIT = "tf_efficientnet_lite0", "blocks.2"


def under(root: Path, stage: str) -> list[str]:
    """Overrides moving the smoke config's ``runs/…`` paths under ``root`` (as if run from there)."""
    config = config_from_yaml(STAGES[stage])
    return [f"{name}={root / config.get(name)}" for name in PATH_FIELDS if config.get(name).startswith("runs/")]


def build(stage: str, root: Path, *overrides: str):
    return make_trainer(load_config(STAGES[stage], [*under(root, stage), *overrides]), report=lambda record: None)


def output(root: Path, stage: str, name: str = "final.safetensors") -> Path:
    return root / config_from_yaml(STAGES[stage]).runtime.out / name


def clone(state: dict) -> dict:
    return {k: v.detach().clone() for k, v in state.items()}


def changed(before: dict, after: dict, prefix: str = "") -> list[str]:
    return [k for k in before if k.startswith(prefix) and not torch.equal(before[k], after[k])]


def head_digest(weights: Path) -> str:
    return split_classifier(BACKBONE, SPLIT, weights=weights).info.head_digest.hex()


def read_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """This module trains in the test process: on one thread, as the smoke runs do (two threads on two busy cores
    run several times slower), restoring the process's setting afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def chain(tmp_path_factory, one_thread) -> SimpleNamespace:
    """The four smoke stages trained in order under one tmp root, with what the tests compare taken on the way."""
    root = tmp_path_factory.mktemp("stages")
    build("moco", root).run()
    stage2 = build("re", root)
    re_initial = clone(stage2.model.state_dict())
    stage2.run()
    stage3 = build("joint", root)
    stage3.run()
    stage4 = build("codec", root)
    codec_initial = clone(stage4.model.state_dict())
    stage4.run()
    return SimpleNamespace(
        root=root,
        re_initial=re_initial,
        stage2_backbone=clone(stage2.backbone.state_dict()),
        codec_initial=codec_initial,
    )


# -- the recipes ----------------------------------------------------------------------------------
def test_each_smoke_stage_reads_the_previous_stages_output():
    configs = {stage: config_from_yaml(path) for stage, path in STAGES.items()}
    assert configs["re"].model.backbone_weights == f"{configs['moco'].runtime.out}/final.safetensors"
    assert configs["joint"].model.backbone_weights == f"{configs['moco'].runtime.out}/final.safetensors"
    assert configs["joint"].ssl.re_from == f"{configs['re'].runtime.out}/final.safetensors"
    assert configs["codec"].model.backbone_weights == f"{configs['joint'].runtime.out}/final.safetensors"
    assert configs["codec"].model.re_from == f"{configs['joint'].runtime.out}/re.safetensors"
    assert {(c.model.re_levels, c.model.re_width, c.model.re_latent) for s, c in configs.items() if s != "moco"} == {
        (2, 16, 16)
    }


def test_lite0_recipes_chain_the_same_way():
    names = ("ssl-moco-lite0", "ssl-re-lite0", "ssl-joint-lite0", "ssl-codec-lite0")
    moco, stage2, joint, codec = (config_from_yaml(ROOT / "configs" / f"{name}.yaml") for name in names)
    assert stage2.model.backbone_weights == joint.model.backbone_weights == f"{moco.runtime.out}/final.safetensors"
    assert (joint.ssl.re_from, codec.model.backbone_weights) == (
        f"{stage2.runtime.out}/final.safetensors",
        f"{joint.runtime.out}/final.safetensors",
    )
    assert (
        codec.model.re_from == f"{joint.runtime.out}/re.safetensors"
        and codec.model.re_frozen
        and codec.loss.feature_target == "filtered"
    )
    assert (
        len({(c.model.re_levels, c.model.re_width, c.model.re_latent, c.model.split) for c in (stage2, joint, codec)})
        == 1
    )
    # The reference's loss weights: stage 2 rate 1, L1 128; stage 3 rate 0.1, L1 0.1.
    assert (stage2.loss.re_rate_weight, stage2.loss.re_distortion_weight) == (1.0, 128.0)
    assert (joint.ssl.rate_weight, joint.ssl.distortion_weight) == (0.1, 0.1)
    script = (ROOT / "scripts" / "train_ssl_schedule.sh").read_text()
    calls = [script.index(f"\nstage {name} ") for name in names]
    assert calls == sorted(calls)  # the script runs them in order, each reading its predecessor's run folder
    for reads in (
        "backbone_weights=$RUNS/ssl-moco-lite0/final.safetensors",
        "ssl_re_from=$RUNS/ssl-re-lite0/final",
        "backbone_weights=$RUNS/ssl-joint-lite0/final",
        "re_from=$RUNS/ssl-joint-lite0/re.safetensors",
    ):
        assert reads in script


# -- stage 2: the RE module alone -----------------------------------------------------------------
@pytest.mark.slow
def test_stage_2_trains_the_re_module_on_the_unchanged_stage_1_head(chain):
    path = output(chain.root, "re")
    module = read_redundancy_filter(path)
    stage1 = output(chain.root, "moco")
    assert module.config == {
        "channels": 40,
        "backbone": BACKBONE,
        "split": SPLIT,
        "head_digest": head_digest(stage1),
        "re_levels": 2,
        "re_width": 16,
        "re_latent": 16,
    }
    trained = load_file(str(path))
    assert changed(chain.re_initial, trained, "re.encoder.")  # Adam moved the RE module …
    assert changed(chain.re_initial, trained, "re.prior.quantiles")  # … and the auxiliary optimiser its quantiles
    assert module.feature_std.flatten().std() > 0  # statistics measured on the data, not the unit defaults
    frozen = split_classifier(BACKBONE, SPLIT, weights=stage1).state_dict()
    assert frozen.keys() == chain.stage2_backbone.keys() and changed(frozen, chain.stage2_backbone) == []
    records = [r for r in read_log(path.parent) if "loss" in r]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert all(math.isfinite(r["loss"]) and r["bpp_re"] > 0 and r["l1_re"] > 0 for r in records)
    for r in records:  # the reference's stage-2 loss: 1 · bpp + 128 · L1
        assert r["loss"] == pytest.approx(r["bpp_re"] + 128 * r["l1_re"], rel=1e-5)


# -- stage 3: MoCo and RE jointly -----------------------------------------------------------------
@pytest.mark.slow
def test_stage_3_trains_backbone_and_re_together(chain):
    stage1, stage3 = (output(chain.root, stage) for stage in ("moco", "joint"))
    before = load_classifier(BACKBONE, stage1).model.state_dict()
    after = load_classifier(BACKBONE, stage3).model.state_dict()  # still a plain classifier file
    assert changed(before, after, "conv_stem.") and changed(before, after, "blocks.1.")  # the head …
    assert changed(before, after, "blocks.5.") and changed(before, after, "conv_head.")  # … and the tail
    assert changed(before, after, "classifier.") == []  # MoCo never trains the classifier layer

    re_before = load_file(str(output(chain.root, "re")))
    re_after = load_file(str(output(chain.root, "joint", "re.safetensors")))
    assert changed(re_before, re_after, "re.encoder.") and changed(re_before, re_after, "re.decoder.")
    # Fixed in stage 3: the statistics RE standardises with, and the quantiles no loss reaches.
    assert changed(re_before, re_after, "feature_") == [] and changed(re_before, re_after, "re.prior.quantiles") == []
    assert (
        read_redundancy_filter(output(chain.root, "joint", "re.safetensors")).config["head_digest"]
        == (head_digest(stage3))
        != head_digest(stage1)
    )

    checkpoint = load_file(str(output(chain.root, "joint", "checkpoint.safetensors")))
    key_re = {k.removeprefix("model.key.module.trunk.re_filter."): v for k, v in checkpoint.items() if ".key." in k}
    assert changed(re_before, key_re, "re.encoder.")  # the momentum encoder carries (and averages) RE too
    records = [r for r in read_log(stage3.parent) if "loss" in r]
    for r in records:  # InfoNCE + 0.1 · bpp + 0.1 · L1
        assert r["loss"] == pytest.approx(r["contrastive"] + 0.1 * r["bpp_re"] + 0.1 * r["l1_re"], rel=1e-5)


@pytest.mark.slow
def test_stage_3_resumes_exactly(chain, tmp_path):
    inputs = [f"backbone_weights={output(chain.root, 'moco')}", f"ssl_re_from={output(chain.root, 're')}"]
    build("joint", tmp_path, *inputs, f"out={tmp_path / 'joint'}", "stop_at=2").run()
    resumed = build("joint", tmp_path, *inputs, f"out={tmp_path / 'joint'}")
    assert resumed.step == 2
    resumed.run()
    for name in ("final.safetensors", "re.safetensors"):
        again, straight = load_file(str(tmp_path / "joint" / name)), load_file(str(output(chain.root, "joint", name)))
        assert again.keys() == straight.keys() and changed(straight, again) == [], name


# -- stage 4: the compression network alone -------------------------------------------------------
@pytest.mark.slow
def test_stage_4_keeps_the_stage_3_re_module_and_trains_the_codec(chain):
    codec = load_file(str(output(chain.root, "codec")))
    re_module = load_file(str(output(chain.root, "joint", "re.safetensors")))
    assert set(re_module) <= set(codec) and changed(re_module, codec) == []  # RE and its statistics, as loaded
    assert changed(chain.codec_initial, codec, "g_a.") and changed(chain.codec_initial, codec, "g_s.")
    assert changed(chain.codec_initial, codec, "entropy_bottleneck.quantiles")
    with safe_open(str(output(chain.root, "codec")), framework="pt") as handle:
        config = json.loads(handle.metadata()["config"])
    assert config["head_digest"] == head_digest(output(chain.root, "joint"))


@pytest.mark.slow
def test_stage_4_codec_codes_with_the_stage_3_backbone_only(chain):
    weights, stage3 = output(chain.root, "codec"), output(chain.root, "joint")
    image = load_rgb(SAMPLES_DIR / "chelsea.png")[:100, :150]
    codec = FeatureCodec.from_weights_file(weights, name="icm-ssl-stage4", backbone_weights=stage3)
    whole = codec.for_full_image()
    decoded = whole.decode(whole.encode(image, 1))
    assert decoded.tensors["features"].shape == (1, 40, 13, 19)  # ceil(100 / 8) × ceil(150 / 8)
    assert decoded.meta["head_digest"] == head_digest(stage3)
    assert torch.isfinite(decoded.tensors["features"]).all()
    stage1_head = FeatureCodec.from_weights_file(weights, name="icm-ssl-x", backbone_weights=output(chain.root, "moco"))
    with pytest.raises(WeightsMismatchError, match="not the one codec"):
        stage1_head.encode(image, 1)


# -- the checks of RE files ------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize(
    "stage, overrides, fragment",
    [
        ("codec", ["re_width=24"], "its RE module has re_width 16 (config: 24); set re_levels / re_width / re_latent"),
        ("codec", ["re_latent=8", "re_levels=3"], "re_levels 2 (config: 3), re_latent 16 (config: 8)"),
        ("joint", ["re_width=32"], "ssl_re_from"),
        ("joint", ["backbone_weights=none"], "trained on another tf_efficientnet_lite0 head"),
        ("codec", ["backbone_weights={moco}"], "use the backbone_weights of the run that wrote it"),
        ("codec", ["re_from={joint}"], "not a redundancy-elimination module (dicm-re)"),
        ("codec", ["split=blocks.1"], "filters tf_efficientnet_lite0 after blocks.2 (40 channels), not"),
    ],
)
def test_a_mismatching_re_file_is_one_config_error_line(chain, stage, overrides, fragment):
    files = {"moco": output(chain.root, "moco"), "joint": output(chain.root, "joint")}
    overrides = [o.format(**files) for o in overrides]
    with pytest.raises(ConfigError) as error:
        build(stage, chain.root, *overrides, f"out={chain.root / 'refused'}")
    assert fragment in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    "stage, override, fragment",
    [
        ("codec", "architecture=mean-scale-hyperprior", "re_from is for dicm-feature"),
        ("codec", "re_levels=0", "re_from needs an RE module"),
        ("codec", "feature_target=f2", "feature_target must be head or filtered"),
        ("re", "ssl_re_from=x.safetensors", "ssl_re_from is for moco-v2"),
        ("re", "re_levels=0", "dicm-re trains an RE module"),
        ("re", "init_from=x.safetensors", "dicm-re starts from scratch"),
        ("joint", "ssl_rate_weight=-1", "ssl_rate_weight and ssl_distortion_weight must be ≥ 0"),
    ],
)
def test_inconsistent_stage_settings_are_refused(stage, override, fragment):
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        load_config(STAGES[stage], [override])


@pytest.mark.slow
def test_a_joint_run_refuses_the_checkpoint_of_a_plain_moco_run(chain, tmp_path):
    for name in ("checkpoint.json", "checkpoint.safetensors"):
        shutil.copy(output(chain.root, "moco", name), tmp_path)
    with pytest.raises(ConfigError, match="holds the checkpoint of a moco-v2 run, not of a moco-v2\\+re run"):
        build("joint", chain.root, f"out={tmp_path}")


# -- the parts ------------------------------------------------------------------------------------
def test_the_key_encoder_runs_its_own_copy_of_the_filtered_path():
    classifier = load_classifier(BACKBONE, None).model
    re_filter = RedundancyFilter(40, re_levels=1, re_width=8, re_latent=8)
    encoder = FilteredEmbeddingEncoder(classifier, SPLIT, re_filter, (0.5,) * 3, (0.5,) * 3, 8, bn_groups=2)
    key = MoCo(encoder, queue_size=8).key.module.trunk
    assert key._head[0] is key.model.conv_stem and key._head[0] is not encoder.trunk.model.conv_stem
    assert key._tail[0] is key.model.blocks[3] and key._finish_map.__self__.conv_head is key.model.conv_head
    assert key.re_filter is not encoder.re_filter
    named = dict(encoder.named_parameters())
    assert not any(name.startswith("trunk._") for name in named)  # the views are not registered twice
    assert not named["trunk.re_filter.re.prior.quantiles"].requires_grad

    images = torch.rand(4, 3, 32, 32)
    embeddings, terms = encoder.eval()(images, with_re_terms=True)  # eval: BN groups and rate noise play no part
    assert embeddings.shape == (4, 8) and torch.equal(encoder(images), embeddings)
    _, whole = encoder.trunk.filtered_feature_map(encoder.normalise(images))
    expected = redundancy_terms(whole, 4 * 32 * 32)  # the two BN groups' terms, combined, are the batch's
    assert set(terms) == set(expected) and all(torch.allclose(terms[k], expected[k]) for k in expected)
    with torch.no_grad():
        encoder.re_filter.re.decoder[-1].bias.add_(1.0)  # f2 feeds the tail: the embeddings follow RE's output
    assert not torch.allclose(encoder(images), embeddings)


def test_re_terms_equal_a_hand_computation():
    target = torch.zeros(2, 3, 4, 4)
    filtered = torch.tensor([0.5, -1.5]).repeat(48).reshape(2, 3, 4, 4)  # |f2 − f1|: 0.5 and 1.5, alternating
    likelihoods = torch.full((2, 5, 1, 1), 0.25)  # 10 latent elements of 2 bits each
    terms = redundancy_terms({"target": target, "filtered": filtered, "likelihoods": {"re": likelihoods}}, pixels=40)
    assert terms["l1_re"].item() == pytest.approx(1.0) and terms["bpp_re"].item() == pytest.approx(20 / 40)


def test_the_filtered_feature_target_matches_the_codec_output_to_f2():
    f1, f2 = torch.zeros(2, 4, 8, 8), torch.ones(2, 4, 8, 8)
    output = {"f_hat": f2.clone(), "features": f1, "f_filtered": f2, "likelihoods": {"y": torch.ones(2, 4, 4, 4)}}
    images = torch.zeros(2, 3, 64, 64)
    assert FeatureObjective(None, 1.0, target="filtered")(output, images)["mse"] == 0
    assert FeatureObjective(None, 1.0, target="head")(output, images)["mse"] == 1
