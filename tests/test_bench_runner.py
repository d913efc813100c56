import csv
import json

import pytest
from PIL import Image

from icmkit.bench import runner
from icmkit.bench.datasets import open_dataset
from icmkit.bench.plan import parse_codec_spec
from icmkit.bench.summary import BD_COLUMNS, SUMMARY_COLUMNS, bd_table, summarize, write_csv
from icmkit.tasks import load_classifier

from conftest import synthetic_photo


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    root = tmp_path_factory.mktemp("labelled")
    rows = ["file,class_index"]
    for i in range(3):
        Image.fromarray(synthetic_photo(180 + 10 * i, 240, seed=i)).save(root / f"{i}.png")
        rows.append(f"{i}.png,{i * 7}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def classifier():
    return load_classifier("resnet18", weights=None)


def _run(labelled, classifier, out, workers=1, spec="jpeg:10,50,webp:30,70"):
    return runner.BenchRun(
        dataset=open_dataset(labelled, "classify"),
        task="classify",
        plans=parse_codec_spec(spec),
        out=out,
        classifier=classifier,
        workers=workers,
        chunk=2,
    )


def test_rows_summary_and_bd(labelled, classifier, tmp_path):
    path = runner.execute(_run(labelled, classifier, tmp_path))
    rows = runner.read_results(path)
    assert len(rows) == 3 * 4
    first = rows[0]
    assert (first["width"], first["height"]) == ("256", "256")  # Resize 256 + CenterCrop 256
    assert float(first["bpp"]) == pytest.approx(8 * int(first["bytes"]) / 256**2)
    assert first["top1"] in ("0", "1") and first["agree"] in ("0", "1")
    summary = summarize(rows)
    assert [(r["codec"], r["quality"], r["n"]) for r in summary][:2] == [("jpeg", 10, 3), ("jpeg", 50, 3)]
    assert 0 <= summary[0]["top1"] <= 100 and summary[0]["map"] == ""
    table = bd_table(summary, anchor="jpeg")
    assert {r["metric"] for r in table} >= {"psnr", "ms_ssim"} and all(r["codec"] == "webp" for r in table)
    write_csv(tmp_path / "summary.csv", SUMMARY_COLUMNS, summary)
    write_csv(tmp_path / "bd.csv", BD_COLUMNS, table)
    with (tmp_path / "summary.csv").open() as handle:
        assert next(csv.reader(handle)) == SUMMARY_COLUMNS


def test_resume_codes_only_what_is_missing(labelled, classifier, tmp_path, monkeypatch):
    run = _run(labelled, classifier, tmp_path, spec="jpeg:10,50")
    runner.execute(run)
    path = tmp_path / "results.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-2]) + "\n")  # as if interrupted before the last two rows
    assert runner.count_pending(run) == 2
    calls = []
    original = runner.code_chunk
    monkeypatch.setattr(runner, "code_chunk", lambda *a: calls.append(len(a[2])) or original(*a))
    runner.execute(run)
    assert sum(calls) == 2 and len(runner.read_results(path)) == 6


def test_parallel_workers_give_the_same_rows(labelled, classifier, tmp_path):
    single = runner.read_results(runner.execute(_run(labelled, classifier, tmp_path / "one", spec="jpeg:30")))
    two = _run(labelled, classifier, tmp_path / "two", workers=2, spec="jpeg:30")
    double = runner.read_results(runner.execute(two))
    drop = ("enc_s", "dec_s")
    key = lambda r: r["key"]  # noqa: E731
    strip = lambda rows: [{k: v for k, v in r.items() if k not in drop} for r in sorted(rows, key=key)]  # noqa: E731
    assert strip(single) == strip(double)


def test_plots_are_written_for_metrics_with_values(tmp_path):
    from icmkit.bench.plots import plot_curves

    summary = [
        {"codec": "a", "quality": 1, "bpp": 0.1, "psnr": 28.0, "top1": 50.0, "map": ""},
        {"codec": "a", "quality": 2, "bpp": 0.3, "psnr": 32.0, "top1": 60.0, "map": ""},
        {"codec": "b", "quality": 1, "bpp": 0.2, "psnr": 30.0, "top1": 58.0, "map": ""},
    ]
    written = plot_curves(summary, tmp_path / "plots", title="test")
    assert sorted(p.name for p in written) == ["psnr.png", "top1.png"]
    assert (tmp_path / "plots" / "psnr.svg").read_text().startswith("<?xml")
    assert (tmp_path / "plots" / "psnr.png").read_bytes()[:4] == b"\x89PNG"


def test_report_is_self_contained(labelled, classifier, tmp_path):
    from icmkit.bench.plots import plot_curves
    from icmkit.bench.report import write_report

    runner.execute(_run(labelled, classifier, tmp_path, spec="jpeg:10,50,webp:30,70"))
    rows = runner.read_results(tmp_path / "results.csv")
    summary = summarize(rows)
    table = bd_table(summary, anchor="jpeg")
    plots = plot_curves(summary, tmp_path / "plots")
    path = write_report(
        tmp_path, {"task": "classify", "anchor": "jpeg"}, rows, summary, table, plots, SUMMARY_COLUMNS, BD_COLUMNS
    )
    text = path.read_text()
    assert text.count("data:image/svg+xml;base64,") == len(plots)  # each plot as its SVG
    assert text.count("data:image/png;base64,") == 1 + 2  # the original's crop, one per codec
    assert "<table>" in text and "webp" in text and 'src="http' not in text


def test_resume_refuses_rows_of_other_weights_or_models(tmp_path):
    from icmkit.bench import provenance
    from icmkit.errors import IcmError

    first = {"task": "classify", "model": "m", "model_weights": "default", "codecs": {"icm-x:1": "aa"}}
    provenance.check_and_record(tmp_path, first, has_rows=False)
    provenance.check_and_record(tmp_path, {**first, "codecs": {"icm-x:2": "bb"}}, has_rows=True)  # new quality: fine
    recorded = json.loads((tmp_path / provenance.PROVENANCE_NAME).read_text())
    assert recorded["codecs"] == {"icm-x:1": "aa", "icm-x:2": "bb"}
    with pytest.raises(IcmError, match="icm-x:1 made with other weights"):
        provenance.check_and_record(tmp_path, {**first, "codecs": {"icm-x:1": "cc"}}, has_rows=True)
    with pytest.raises(IcmError, match="task model m"):
        provenance.check_and_record(tmp_path, {**first, "model": "other"}, has_rows=True)
    provenance.check_and_record(tmp_path, {**first, "codecs": {"icm-x:1": "cc"}}, has_rows=False)  # no rows: new start


def _header(path):
    with path.open(newline="") as handle:
        return next(csv.reader(handle))


def test_results_take_the_tasks_columns(labelled, classifier, tmp_path):
    """Classification's rows carry pred / top1 / top5 / agree between the coding's columns and the timings;
    a task without per-image columns (fidelity) writes none of them."""
    classify = runner.execute(_run(labelled, classifier, tmp_path / "classify", spec="jpeg:50"))
    assert _header(classify) == [*runner.CODING_COLUMNS, "pred", "top1", "top5", "agree", "enc_s", "dec_s"]
    fidelity = runner.BenchRun(
        dataset=open_dataset(labelled, "fidelity"),
        task="fidelity",
        plans=parse_codec_spec("jpeg:50"),
        out=tmp_path / "fidelity",
        workers=1,
        chunk=2,
    )
    path = runner.execute(fidelity)
    assert _header(path) == [*runner.CODING_COLUMNS, *runner.TIMING_COLUMNS]
    assert len(runner.read_results(path)) == 3


def test_a_resumed_file_keeps_its_own_columns(labelled, classifier, tmp_path):
    """A results file written with other columns (an older run's) is appended to under its own header."""
    first = runner.execute(_run(labelled, classifier, tmp_path, spec="jpeg:50"))
    rows = runner.read_results(first)
    old = [*runner.CODING_COLUMNS, "pred", "top1", "top5", "agree", "note", "enc_s", "dec_s"]
    write_csv(first, old, rows[:1])
    runner.execute(_run(labelled, classifier, tmp_path, spec="jpeg:50"))
    assert _header(first) == old
    resumed = runner.read_results(first)
    assert len(resumed) == 3 and {r["key"] for r in resumed} == {r["key"] for r in rows}
    assert all(r["top1"] in ("0", "1") and r["note"] == "" for r in resumed)
