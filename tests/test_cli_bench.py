"""`icm bench` on tiny generated data: through the real entry point for the full run and torchrun, in-process
(the same Typer app) for the other cases."""

import csv
import os
import subprocess
import sys

import pytest
from PIL import Image

from conftest import labelled_folder, synthetic_photo
from helpers.cli import assert_user_error, icm, run

FAST = [
    "--codecs",
    "jpeg:10,50,webp:30,70",
    "--anchor",
    "jpeg",
    "--model",
    "resnet18",
    "--model-weights",
    "none",
    "--workers",
    "1",
]


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    return labelled_folder(tmp_path_factory.mktemp("labelled"), 200, 260)


def test_bench_writes_every_output(labelled, tmp_path):
    out = tmp_path / "bench"
    result = icm("bench", "--data", labelled, "--out", out, *FAST)
    assert result.returncode == 0, result.stderr
    for name in ("results.csv", "summary.csv", "bd.csv", "report.html", "plots/psnr.png", "plots/top1.svg"):
        assert (out / name).is_file(), name
    with (out / "summary.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["codec"], r["quality"], r["n"]) for r in rows] == [
        ("jpeg", "10", "2"),
        ("jpeg", "50", "2"),
        ("webp", "30", "2"),
        ("webp", "70", "2"),
        ("(uncompressed image)", "", "2"),
    ]  # the classifier on the uncompressed crops: no rate
    assert rows[-1]["bpp"] == "" and 0 <= float(rows[-1]["top1"]) <= 100
    assert "report:" in result.stdout and "(uncompressed image)" in result.stdout


def test_bench_fidelity_task(labelled, tmp_path):
    result = run(
        "bench",
        "--data",
        labelled,
        "--task",
        "fidelity",
        "--out",
        tmp_path / "f",
        "--codecs",
        "jpeg:10,50,webp:30,70",
        "--anchor",
        "jpeg",
        "--workers",
        "2",
    )
    assert result.returncode == 0, result.stderr
    header = (tmp_path / "f" / "summary.csv").read_text().splitlines()[1].split(",")
    assert header[6] == ""  # top1 column stays empty without a task model


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--codecs", "nope"], "unknown codec"),
        (["--model", "no_such_model_x"], "no_such_model_x"),
        (["--anchor", "avif"], "anchor"),
        (["--task", "dance"], "unknown task"),
    ],
)
def test_bench_bad_options(args, fragment, labelled, tmp_path):
    base = {"--codecs": "jpeg:10,50", "--anchor": "jpeg", "--model": "resnet18", "--model-weights": "none"}
    for key, value in zip(args[::2], args[1::2]):
        base[key] = value
    flat = [item for pair in base.items() for item in pair]
    assert_user_error(run("bench", "--data", labelled, "--out", tmp_path / "o", *flat), fragment)


def test_bench_bad_data(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_user_error(run("bench", "--data", empty, "--out", tmp_path / "o", *FAST), "needs labels")
    assert_user_error(run("bench", "--data", empty, "--task", "fidelity", "--out", tmp_path / "o", *FAST), "no images")


def test_bench_corrupt_image_is_named(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    Image.fromarray(synthetic_photo(200, 260)).save(root / "good.png")
    (root / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (root / "labels.csv").write_text("file,class_index\ngood.png,1\nbad.png,2\n")
    assert_user_error(run("bench", "--data", root, "--out", tmp_path / "o", *FAST), "bad.png")


def test_torchrun_two_ranks_match_one_process(labelled, tmp_path):
    def summary_without_times(folder):
        with (folder / "summary.csv").open() as handle:
            return [{k: v for k, v in row.items() if k not in ("enc_s", "dec_s")} for row in csv.DictReader(handle)]

    single = icm("bench", "--data", labelled, "--out", tmp_path / "one", *FAST)
    assert single.returncode == 0, single.stderr
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "icmkit",
        "bench",
        "--data",
        str(labelled),
        "--out",
        str(tmp_path / "two"),
        *FAST,
    ]
    double = subprocess.run(
        command, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert double.returncode == 0, double.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "two").glob("results.rank*")) == [
        "results.rank0-of-2.csv",
        "results.rank1-of-2.csv",
    ]
    assert summary_without_times(tmp_path / "one") == summary_without_times(tmp_path / "two")
    assert (tmp_path / "two" / "report.html").is_file()


@pytest.mark.parametrize("task", ["detect", "segment"])
def test_bench_coco_tasks_on_random_detectors(task, tiny_coco, tmp_path):
    result = run(
        "bench",
        "--data",
        tiny_coco,
        "--task",
        task,
        "--model-weights",
        "none",
        "--codecs",
        "jpeg:10,50,webp:50",
        "--anchor",
        "jpeg",
        "--workers",
        "1",
        "--out",
        tmp_path / task,
        "--detector-min-size",
        "96",
        env={"OMP_NUM_THREADS": "2"},
    )
    assert result.returncode == 0, result.stderr
    with (tmp_path / task / "summary.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 and all(r["map"] != "" and 0 <= float(r["map"]) <= 100 for r in rows)
    assert all(r["top1"] == "" for r in rows)
    assert sorted(p.name for p in (tmp_path / task / "detections").iterdir()) == [
        "jpeg-10.jsonl",
        "jpeg-50.jsonl",
        "webp-50.jsonl",
    ]
