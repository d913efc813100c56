"""One bench per output folder, resuming after a kill, and what the report and BD table say about themselves."""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys

import pytest

from icmkit.bench import runner
from icmkit.bench.bd import bd
from icmkit.bench.benchmark import BenchOptions, run_bench
from icmkit.bench.lock import LOCK_NAME, FolderInUseError, folder_lock
from icmkit.bench.summary import bd_table

from conftest import labelled_folder
from test_cli_bench import FAST as BENCH_FLAGS  # the same small codec set, random-weights model

FAST = {"codecs": "jpeg:10,50,webp:30,70", "anchor": "jpeg", "model": "resnet18", "model_weights": None}


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    return labelled_folder(tmp_path_factory.mktemp("labelled"), 180, 200)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid  # reaped: no process has this pid now (pids are not reused this quickly)


def test_a_live_lock_is_refused_naming_its_pid(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / LOCK_NAME).write_text(f'{{"pid": {sleeper.pid}, "host": "{socket.gethostname()}"}}')
        with pytest.raises(FolderInUseError, match=f"pid {sleeper.pid}"):
            with folder_lock(tmp_path):
                pass
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_stale_lock_is_taken_over_and_released(tmp_path):
    (tmp_path / LOCK_NAME).write_text(f'{{"pid": {_dead_pid()}, "host": "{socket.gethostname()}"}}')
    with folder_lock(tmp_path):
        assert f'"pid": {os.getpid()}' in (tmp_path / LOCK_NAME).read_text()
        with pytest.raises(FolderInUseError, match=f"pid {os.getpid()}"):  # a second run while this one holds it
            with folder_lock(tmp_path):
                pass
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_half_written_lock_counts_as_stale(tmp_path):
    (tmp_path / LOCK_NAME).write_text('{"pi')
    with folder_lock(tmp_path):
        assert f'"pid": {os.getpid()}' in (tmp_path / LOCK_NAME).read_text()  # taken over, not refused
    assert not (tmp_path / LOCK_NAME).exists()


def test_second_bench_on_one_folder_is_refused(labelled, tmp_path):
    with folder_lock(tmp_path):
        with pytest.raises(FolderInUseError, match="in use by another icm bench"):
            run_bench(BenchOptions(out=tmp_path, data=labelled, **FAST))
    assert not (tmp_path / "results.csv").exists()


def test_killed_bench_resumes_dropping_its_half_written_row(labelled, tmp_path):
    first = run_bench(BenchOptions(out=tmp_path, data=labelled, **FAST))
    path = tmp_path / "results.csv"
    complete = path.read_text().splitlines(keepends=True)
    assert len(complete) == 1 + 8
    # Killed while appending: three rows done, the fourth cut mid-number.
    path.write_text("".join(complete[:4]) + complete[4][: len(complete[4]) // 2])
    assert len(runner.read_results(path)) == 3  # the partial row is not taken for a finished one
    kept = []
    second = run_bench(BenchOptions(out=tmp_path, data=labelled, **FAST), resumed=lambda *args: kept.append(args))
    assert [(n, p) for n, p, _ in kept] == [(3, path)] and kept[0][2].carried == 0
    rows = runner.read_results(path)
    assert len(rows) == 8 and len({(r["codec"], r["quality"], r["key"]) for r in rows}) == 8
    strip = lambda summary: [{k: v for k, v in r.items() if k not in ("enc_s", "dec_s")} for r in summary]  # noqa: E731
    assert strip(second.summary) == strip(first.summary)
    assert not (tmp_path / LOCK_NAME).exists()


def test_report_states_the_rates_shown_and_the_originals_prediction(labelled, tmp_path):
    outcome = run_bench(BenchOptions(out=tmp_path, data=labelled, **FAST))
    text = outcome.report.read_text()
    rows = runner.read_results(outcome.results)
    key = rows[0]["key"]
    shown = []
    for codec in ("jpeg", "webp"):  # the figures under each picture: the point of each codec shown
        rates = [f"{float(r['bpp']):.3f}" for r in rows if r["key"] == key and r["codec"] == codec]
        shown.append(next(rate for rate in rates if f"{rate} bpp" in text))
    low, high = sorted(shown, key=float)
    assert f"One image at {low}–{high} bpp" in text or f"One image at {low} bpp" in text
    assert "<b>original</b> (uncompressed)<br>→ " in text


def test_plots_carry_their_metric_in_the_title(tmp_path):
    from matplotlib import pyplot as plt  # noqa: F401 (the backend is chosen by plot_curves)

    from icmkit.bench.plots import plot_curves

    summary = [
        {"codec": c, "quality": q, "bpp": b, "psnr": p, "top1": t}
        for c, q, b, p, t in [
            ("a", 1, 0.1, 28.0, 50.0),
            ("a", 2, 0.3, 32.0, 60.0),
            ("b", 1, 0.2, 30.0, 58.0),
            ("b", 2, 0.5, 33.0, 66.0),
        ]
    ]
    plot_curves(summary, tmp_path, title="dev")
    svg = (tmp_path / "top1.svg").read_text()
    assert "top-1 accuracy vs rate — dev" in svg and "PSNR vs rate — dev" in (tmp_path / "psnr.svg").read_text()
    assert not list(tmp_path.glob(".*.tmp"))


def test_legend_sits_outside_the_axes(tmp_path, monkeypatch):
    import matplotlib.figure

    legends = []
    original = matplotlib.figure.Figure.savefig

    def spy(figure, *args, **kwargs):
        axes = figure.axes[0]
        figure.canvas.draw()
        legends.append((axes.get_legend().get_window_extent(), axes.get_window_extent()))
        return original(figure, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    from icmkit.bench.plots import plot_curves

    plot_curves(
        [
            {"codec": "a", "quality": 1, "bpp": 0.1, "psnr": 28.0},
            {"codec": "a", "quality": 2, "bpp": 0.3, "psnr": 32.0},
        ],
        tmp_path,
    )
    legend, axes = legends[0]
    assert legend.x0 >= axes.x1  # entirely right of the plot area: it covers no point


def test_nan_bd_rows_say_why():
    no_overlap = bd([0.1, 0.2], [20.0, 22.0], [0.1, 0.2], [30.0, 32.0])
    assert math.isnan(no_overlap.bd_rate_pct) and "no overlap" in no_overlap.note
    summary = [
        {"codec": c, "quality": q, "bpp": b, "top1": t}
        for c, q, b, t in [("a", 1, 0.1, 40.0), ("a", 2, 0.3, 60.0), ("b", 1, 0.2, 50.0), ("b", 2, 0.4, 50.0)]
    ]
    (row,) = bd_table(summary, "a")
    assert math.isnan(row["bd_rate_pct"]) and "flat" in row["note"]


def test_icm_bd_prints_the_reason(tmp_path):
    from typer.testing import CliRunner

    from icmkit.cli.main import app

    anchor, test = tmp_path / "a.csv", tmp_path / "b.csv"
    anchor.write_text("codec,bpp,psnr\na,0.1,20\na,0.2,22\n")
    test.write_text("codec,bpp,psnr\nb,0.1,30\nb,0.2,32\n")
    result = CliRunner().invoke(app, ["bd", str(anchor), str(test)], catch_exceptions=False)
    assert result.exit_code == 0 and "no BD figure — no overlap" in result.stdout
    result = CliRunner().invoke(app, ["bd", str(anchor), str(test), "--json"], catch_exceptions=False)
    assert '"bd_rate_pct": null' in result.stdout


def test_cli_says_that_it_resumed(labelled, tmp_path):
    from typer.testing import CliRunner

    from icmkit.cli.main import app

    args = ["bench", "--data", str(labelled), "--out", str(tmp_path), *BENCH_FLAGS]
    first = CliRunner().invoke(app, args, catch_exceptions=False)
    assert first.exit_code == 0 and "resumed" not in first.stderr
    second = CliRunner().invoke(app, args, catch_exceptions=False)
    said = " ".join(second.stderr.split())
    assert (
        second.exit_code == 0
        and f"resumed: 8 rows of this run's plan kept from an earlier run in {tmp_path / 'results.csv'}" in said
    )
    assert "other codecs" not in said  # nothing but this run's codecs in the folder
