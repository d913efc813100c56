"""`icm probe` and icmkit.tasks.probe: pooled frozen features, the linear probe, and the command end to end."""

from __future__ import annotations

import csv
import inspect
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from icmkit.backbones import SplitBackbone, split_classifier
from icmkit.bench.protocols import resize_center_crop
from icmkit.cli import probe as probe_cli
from icmkit.cli.main import app
from icmkit.codecs.base import FEATURES, FeatureMaps
from icmkit.errors import IcmError, WeightsMismatchError
from icmkit.tasks import probe
from icmkit.tasks.classification import load_classifier

from conftest import registered_codecs, synthetic_photo

LITE0 = "tf_efficientnet_lite0"
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def blobs(seed: int, per_class: int = 40, classes: int = 4, dims: int = 16):
    """Well separated Gaussian clusters, shifted and scaled far from zero mean / unit variance."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dims, generator=torch.Generator().manual_seed(123)) * 4
    x = torch.cat([c + torch.randn(per_class, dims, generator=generator) for c in centres])
    return x * 50 + 300, torch.arange(classes).repeat_interleave(per_class)


# -- the linear probe ----------------------------------------------------------------------------------------
def test_probe_learns_a_linearly_separable_problem_to_100_percent():
    train_x, train_y = blobs(seed=0)
    eval_x, eval_y = blobs(seed=1)
    fitted = probe.train_linear_probe(train_x, train_y, 4, epochs=30, batch_size=32)
    assert isinstance(fitted, torch.nn.Linear) and not fitted.training
    assert probe.evaluate_probe(fitted, eval_x, eval_y) == {"top1": 100.0, "top5": 100.0}
    scores = probe.evaluate_probe(fitted, eval_x, (eval_y + 1) % 4)  # every label wrong: top-1 must see it
    assert scores["top1"] == 0.0


def test_the_probe_standardises_with_the_training_statistics():
    train_x, train_y = blobs(seed=0)
    fitted = probe.train_linear_probe(train_x, train_y, 4, epochs=2)
    torch.testing.assert_close(fitted.feature_mean[0], train_x.mean(0))
    torch.testing.assert_close(fitted.feature_std[0], train_x.std(0, unbiased=False))
    x = train_x[:5]
    expected = (x - train_x.mean(0)) / train_x.std(0, unbiased=False) @ fitted.weight.T + fitted.bias
    torch.testing.assert_close(fitted(x), expected, rtol=1e-4, atol=1e-4)
    assert {"feature_mean", "feature_std", "weight", "bias"} <= set(fitted.state_dict())


def test_a_constant_feature_does_not_divide_by_zero():
    train_x, train_y = blobs(seed=0)
    train_x[:, 3] = 7.0
    fitted = probe.train_linear_probe(train_x, train_y, 4, epochs=5)
    assert fitted.feature_std[0, 3] == 1.0 and torch.isfinite(fitted.weight).all()


def test_training_is_deterministic_for_a_seed_and_leaves_the_global_generator_alone():
    train_x, train_y = blobs(seed=0)
    state = torch.random.get_rng_state()
    first = probe.train_linear_probe(train_x, train_y, 4, epochs=3, batch_size=16, seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)
    again = probe.train_linear_probe(train_x, train_y, 4, epochs=3, batch_size=16, seed=7)
    other = probe.train_linear_probe(train_x, train_y, 4, epochs=3, batch_size=16, seed=8)
    assert torch.equal(first.weight, again.weight) and torch.equal(first.bias, again.bias)
    assert not torch.equal(first.weight, other.weight)


def test_training_works_on_inference_tensors_and_under_no_grad():
    train_x, train_y = blobs(seed=0)
    with torch.inference_mode():
        frozen = train_x * 1.0  # an inference tensor, as pooled_features returns
    with torch.no_grad():
        fitted = probe.train_linear_probe(frozen, train_y, 4, epochs=10, batch_size=32)
    assert probe.evaluate_probe(fitted, train_x, train_y)["top1"] == 100.0


def test_unseen_eval_classes_are_a_warning_and_count_as_errors():
    train_x, train_y = blobs(seed=0)
    eval_x, eval_y = blobs(seed=1)
    imagenet = torch.tensor([3, 17, 250, 999])  # labels are ImageNet indices, not 0…k−1
    keep = train_y != 2  # no training example of class 250
    result = probe.fit_and_evaluate(
        train_x[keep], imagenet[train_y[keep]].tolist(), eval_x, imagenet[eval_y].tolist(), epochs=30, batch_size=32
    )
    assert result.classes == (3, 17, 999) and result.unseen_classes == (250,)
    assert (result.train_images, result.eval_images, result.unseen_images) == (120, 160, 40)
    assert result.top1 == 75.0  # every image of the three learned classes, none of class 250
    assert len(result.warnings) == 1 and "1 eval class (40 of 160 images) has no training example" in result.warnings[0]
    seen = probe.fit_and_evaluate(train_x, train_y.tolist(), eval_x, eval_y.tolist(), epochs=2)
    assert seen.warnings == [] and seen.unseen_images == 0


@pytest.mark.parametrize(
    "labels, fragment",
    [([], "no training images"), ([5, 5, 5], "all 3 training images are of class 5")],
)
def test_no_training_images_or_one_class_is_a_clear_error(labels, fragment):
    x = torch.ones((len(labels), 4))
    with pytest.raises(IcmError, match=fragment):
        probe.fit_and_evaluate(x, labels, torch.ones((2, 4)), [5, 6])
    with pytest.raises(IcmError, match=fragment.replace(" 5", " 0")):  # the probe's own labels: 0 … k − 1
        probe.train_linear_probe(x, [0] * len(labels), 2)


@pytest.mark.parametrize(
    "options, fragment",
    [({"epochs": 0}, "epochs"), ({"lr": -1.0}, "learning rate"), ({"batch_size": 0}, "batch size")],
)
def test_bad_training_options_are_refused(options, fragment):
    train_x, train_y = blobs(seed=0, per_class=2)
    with pytest.raises(IcmError, match=fragment):
        probe.train_linear_probe(train_x, train_y, 4, **options)


# -- pooled features -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lite0_random(one_torch_thread):
    return load_classifier(LITE0, None)


@pytest.fixture(scope="module")
def crops():
    return [resize_center_crop(synthetic_photo(80, 96, seed=seed), 256) for seed in range(2)]


def test_pooled_image_features_are_what_the_classifier_layer_reads(lite0_random, crops):
    pooled = probe.pooled_features(crops, lite0_random)
    assert pooled.shape == (2, 1280) and pooled.dtype == torch.float32
    with torch.inference_mode():
        logits = lite0_random.model.classifier(pooled).numpy()
    np.testing.assert_allclose(logits, lite0_random.predict(crops), rtol=1e-4, atol=1e-4)
    one_by_one = torch.cat([probe.pooled_features([crop], lite0_random) for crop in crops])
    torch.testing.assert_close(one_by_one, pooled)


def test_pooled_decoded_features_go_through_the_tail_on_the_classifier_window(lite0_random, crops):
    split = split_classifier(LITE0, "blocks.2", None)  # its own random model: seed 0 as lite0_random's
    assert (
        split.info.head_digest
        == SplitBackbone(LITE0, lite0_random.model, "blocks.2", (0.5,) * 3, (0.5,) * 3).info.head_digest
    )
    batch = torch.stack([torch.from_numpy(c).permute(2, 0, 1) for c in crops]).float() / 255
    with torch.inference_mode():
        maps = split.features(batch)
    meta = {"backbone": LITE0, "split": "blocks.2", "head_digest": split.info.head_digest.hex()}
    decoded = [
        FeatureMaps({FEATURES: maps[i : i + 1].numpy()}, {FEATURES: 8}, (256, 256), dict(meta)) for i in range(2)
    ]
    pooled = probe.pooled_features(decoded, lite0_random)
    assert pooled.shape == (2, 1280)
    window = maps[:, :, 2:30, 2:30]  # Lite0 crops 224 of 256: the centre 28×28 of the 32×32 map at stride 8
    with torch.inference_mode():
        torch.testing.assert_close(pooled, split.tail.pooled(window))
        torch.testing.assert_close(lite0_random.model.classifier(pooled), split.tail(window), rtol=1e-4, atol=1e-4)
    # the features of the crops are close to the pooled image features: the two paths describe the same images
    similarity = torch.nn.functional.cosine_similarity(pooled, probe.pooled_features(crops, lite0_random))
    assert bool((similarity > 0.9).all()), similarity

    other = FeatureMaps(decoded[0].tensors, decoded[0].strides, (256, 256), {**meta, "head_digest": "00" * 8})
    with pytest.raises(WeightsMismatchError, match="head digest"):
        probe.pooled_features([other], lite0_random)
    with pytest.raises(IcmError, match="not of both"):
        probe.pooled_features([decoded[0], crops[0]], lite0_random)
    with pytest.raises(IcmError, match="come from .* decodes"):
        probe.pooled_features(
            [FeatureMaps(decoded[0].tensors, {FEATURES: 8}, (256, 256), {**meta, "backbone": "resnet50"})], lite0_random
        )


def test_resnet_pools_the_input_of_its_fc_layer(one_torch_thread):
    resnet = load_classifier("resnet18", None)
    images = [synthetic_photo(64, 64, seed=4)]
    pooled = probe.pooled_features(images, resnet)
    assert pooled.shape == (1, 512)
    with torch.inference_mode():
        np.testing.assert_allclose(resnet.model.fc(pooled).numpy(), resnet.predict(images), rtol=1e-4, atol=1e-4)
        split = SplitBackbone(
            "resnet18", resnet.model, "layer2", resnet.preprocess_config.mean, resnet.preprocess_config.std
        )
        x = torch.randn(1, 128, 8, 8)
        torch.testing.assert_close(resnet.model.fc(split.tail.pooled(x)), split.tail(x))


# -- the command ---------------------------------------------------------------------------------------------
def run(*args):
    return CliRunner().invoke(app, ["probe", *map(str, args)], catch_exceptions=False)


def assert_user_error(result, fragment: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    assert fragment in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def _labelled_folder(folder, entries):
    """Write images and labels.csv (file,class_index) as open_dataset reads them; ``entries``: (name, seed, label)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["file,class_index"]
    for name, seed, label in entries:
        Image.fromarray(synthetic_photo(48, 64, seed=seed)).save(folder / name)
        lines.append(f"{name},{label}")
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Four training images of two classes; the eval set holds the same pictures under other names in another
    order, plus one picture of a class without training examples."""
    root = tmp_path_factory.mktemp("probe")
    train = [("a.png", 1, 7), ("b.png", 2, 7), ("c.png", 3, 42), ("d.png", 4, 42)]
    train_dir = _labelled_folder(root / "train", train)
    eval_entries = [(f"eval-{name}", seed, label) for name, seed, label in reversed(train)] + [("new.png", 9, 500)]
    eval_dir = _labelled_folder(root / "eval", eval_entries)
    one_class = _labelled_folder(root / "one", [("x.png", 1, 3), ("y.png", 2, 3)])
    return train_dir, eval_dir, one_class


def _csv_rows(path):
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


FAST = ("--model", LITE0, "--model-weights", "none", "--epochs", "30", "--crop", "64")


def test_uncompressed_probe_learns_the_training_pictures(folders, tmp_path):
    train_dir, eval_dir, _ = folders
    result = run("--train", train_dir, "--eval", eval_dir, "--codec", "none", *FAST, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    assert "linear probe" in result.stdout and "none" in result.stdout
    assert "1 eval class (1 of 5 images) has no training example" in result.stderr
    rows = _csv_rows(tmp_path / "out" / "probe.csv")
    assert len(rows) == 1 and tuple(rows[0]) == probe_cli.RESULT_COLUMNS
    row = rows[0]
    assert (row["codec"], row["quality"], row["bpp"], row["train_bpp"]) == ("none", "", "", "")
    assert float(row["top1"]) == 80.0  # the four pictures it was trained on, matched by content, not by name
    assert (row["train_images"], row["eval_images"], row["classes"], row["unseen_classes"]) == ("4", "5", "2", "1")
    assert (row["model"], row["feature_dim"]) == (LITE0, "1280")
    document = json.loads((tmp_path / "out" / "probe.json").read_text())
    assert document["results"][0]["bpp"] is None and document["results"][0]["top1"] == 80.0
    assert document["settings"]["epochs"] == 30 and document["settings"]["crop"] == 64
    assert len(document["warnings"]) == 1


def test_pixel_codec_probe_reports_each_quality_with_bpp(folders, tmp_path):
    train_dir, _, _ = folders
    out = tmp_path / "jpeg"
    result = run(
        "--train", train_dir, "--eval", train_dir, "--codec", "jpeg:50,90", *FAST, "--limit", "4", "--out", out
    )
    assert result.exit_code == 0, result.stderr
    assert "warning" not in result.stderr
    rows = _csv_rows(out / "probe.csv")
    assert [(r["codec"], r["quality"]) for r in rows] == [("jpeg", "50"), ("jpeg", "90")]
    bpp = [float(r["bpp"]) for r in rows]
    assert 0 < bpp[0] < bpp[1] < 24 and all(float(r["train_bpp"]) == float(r["bpp"]) for r in rows)
    assert all(float(r["top1"]) == 100.0 for r in rows)
    document = json.loads((out / "probe.json").read_text())
    assert [r["quality"] for r in document["results"]] == [50, 90] and document["settings"]["codec"] == "jpeg:50,90"


@pytest.fixture()
def feature_codec(tiny_feature_codec):
    with registered_codecs(tiny_feature_codec):
        yield tiny_feature_codec.name


def test_feature_codec_probe_pools_through_its_backbones_tail(folders, feature_codec, tmp_path):
    train_dir, _, _ = folders
    out = tmp_path / "features"
    result = run(
        "--train", train_dir, "--eval", train_dir, "--codec", f"{feature_codec}:1", "--epochs", "30", "--crop", "64",
        "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    (row,) = _csv_rows(out / "probe.csv")
    assert (row["codec"], row["quality"], row["model"], row["feature_dim"]) == (feature_codec, "1", LITE0, "1280")
    assert float(row["bpp"]) > 0 and float(row["top1"]) == 100.0
    assert_user_error(
        run("--train", train_dir, "--eval", train_dir, "--codec", f"{feature_codec}:1", "--model", "resnet18"),
        "only tf_efficientnet_lite0's tail can pool them, not resnet18",
    )
    assert_user_error(
        run("--train", train_dir, "--eval", train_dir, "--codec", f"{feature_codec}:1", "--model-weights", "none"),
        "head digest",
    )


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--train", "{missing}", "--eval", "{train}"], "--train"),
        (["--train", "{train}", "--eval", "{missing}"], "no such folder"),
        (["--train", "{train}", "--eval", "{train}", "--codec", "nosuchcodec"], "nosuchcodec"),
        (["--train", "{train}", "--eval", "{train}", "--codec", "jpeg:abc"], "quality must be"),
        (["--train", "{train}", "--eval", "{train}", "--codec", "jpeg:500"], "outside"),
        (["--train", "{train}", "--eval", "{train}", "--codec", "jpeg:50,"], "empty quality"),
        (["--train", "{train}", "--eval", "{train}", "--epochs", "0"], "--epochs must be at least 1"),
        (["--train", "{train}", "--eval", "{train}", "--lr", "0"], "--lr must be a positive number"),
        (["--train", "{train}", "--eval", "{train}", "--limit", "0"], "--limit must be at least 1"),
        (["--train", "{one}", "--eval", "{train}", *FAST], "all 2 training images are of class 3"),
        (["--train", "{train}", "--eval", "{train}", "--model", "no_such_net"], "unknown classifier"),
    ],
)
def test_bad_input_is_one_line_and_status_2(folders, tmp_path, args, fragment):
    train_dir, _, one_class = folders
    paths = {"missing": tmp_path / "missing", "train": train_dir, "one": one_class}
    assert_user_error(run(*(a.format(**paths) for a in args)), fragment)


def test_the_command_defaults_are_the_library_defaults():
    command = inspect.signature(probe_cli.probe).parameters
    library = inspect.signature(probe.train_linear_probe).parameters
    for option, name in (
        ("epochs", "epochs"),
        ("lr", "lr"),
        ("weight_decay", "weight_decay"),
        ("batch_size", "batch_size"),
    ):
        assert command[option].default == library[name].default, option


def test_every_option_has_help_and_help_imports_nothing_heavy():
    import typing

    hints = typing.get_type_hints(probe_cli.probe, include_extras=True)
    options = [h.__metadata__[0] for name, h in hints.items() if name != "return"]
    assert len(options) == 13 and all(option.help for option in options)
    code = (
        "import sys\nfrom icmkit.cli.main import main\nsys.argv = ['icm', 'probe', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print([m for m in ('torch', 'numpy', 'PIL', 'timm', 'scipy') if m in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "--model-weights" in result.stdout and result.stdout.strip().splitlines()[-1] == "[]"
