"""What ``report.html``, ``summary.csv`` and the plots say, without a browser (tests/test_report_browser.py
renders the report in Chromium): precision of times, folded BD notes, the header's task model, the 1:1
showcase crops, plot sizes, and the rows a rerun with fewer codecs keeps."""

from __future__ import annotations

import csv
import html
import math
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from icmkit.bench.plots import MIN_FONT_PT, plot_curves
from icmkit.bench.report import CROP, crop_window, write_report
from icmkit.bench.runner import SHOWCASE_DIR
from icmkit.bench.summary import (
    BD_COLUMNS,
    SUMMARY_COLUMNS,
    bd_table,
    display_header,
    display_value,
    report_rows,
    resume_message,
    write_csv,
)

from conftest import synthetic_photo


def _summary(points, metric="psnr"):
    return [{"codec": c, "quality": q, "n": 2, "bpp": b, metric: v} for c, q, b, v in points]


def _report(tmp_path: Path, meta: dict, summary: list[dict], rows=(), carried=None) -> str:
    path = write_report(
        tmp_path, meta, list(rows), summary, bd_table(summary, meta["anchor"]), [], SUMMARY_COLUMNS, BD_COLUMNS, carried
    )
    return path.read_text()


def test_times_read_in_milliseconds_with_one_precision():
    assert display_header("enc_s") == "enc ms" and display_header("dec_s") == "dec ms"
    assert [display_value("enc_s", v) for v in (0.003313, 1.05, "0.0005", "", math.nan)] == [
        "3.3",
        "1050.0",
        "0.5",
        "",
        "",
    ]
    assert display_value("bpp", 0.123456) == "0.1235" and display_value("psnr", "31.456") == "31.46"
    assert display_value("quality", 3.725) == "3.725" and display_value("codec", "jpeg") == "jpeg"


def test_summary_csv_times_share_one_precision(tmp_path):
    rows = [{"codec": "a", "quality": 1, "n": 1, "bpp": 0.5, "enc_s": 0.003313, "dec_s": 1.05}]
    write_csv(tmp_path / "s.csv", SUMMARY_COLUMNS, rows)
    (row,) = csv.DictReader((tmp_path / "s.csv").open())
    assert (row["enc_s"], row["dec_s"], row["bpp"]) == ("0.003313", "1.050000", "0.5")  # seconds, µs resolution


def test_bd_notes_fold_into_one_line_when_no_pair_has_a_figure(tmp_path):
    # Flat accuracy curves (few images): every BD row lacks a figure for want of rate points.
    summary = _summary([("a", 1, 0.1, 50.0), ("a", 2, 0.3, 50.0), ("b", 1, 0.2, 50.0), ("b", 2, 0.4, 50.0)], "top1")
    table = bd_table(summary, "a")
    assert table and all("need at least 2 usable rate points" in row["note"] for row in table)
    text = _report(tmp_path, {"task": "classify", "anchor": "a"}, summary)
    bd = text.split("Bjøntegaard", 1)[1]
    assert bd.index("<details") < bd.index("<table>")  # no table of notes outside the folded part
    summary_line = re.search(r"<summary>(.*?)</summary>", bd).group(1)
    assert summary_line.startswith("No BD figures for 1 codec × metric pair: not enough points")
    assert "need at least 2" not in summary_line and "<details open" not in text


def test_bd_rows_with_figures_stay_in_a_table(tmp_path):
    summary = _summary([("a", 1, 0.1, 30.0), ("a", 2, 0.4, 34.0), ("b", 1, 0.15, 31.0), ("b", 2, 0.5, 35.0)])
    text = _report(tmp_path, {"task": "fidelity", "anchor": "a"}, summary)
    bd = text.split("Bjøntegaard", 1)[1]
    assert "<details" not in bd and "BD-rate %" in bd and "pchip" in bd


@pytest.mark.parametrize(
    "meta, expected, absent",
    [
        ({"task": "fidelity", "model": None, "model_weights": "default"}, "task model: <b>none", "classifier"),
        ({"task": "classify", "model": "resnet18", "model_weights": None}, "classifier: <b>resnet18 (random", "—"),
        ({"task": "detect", "model": "fasterrcnn_resnet50_fpn", "model_weights": "default"}, "detector: <b>", "—"),
    ],
)
def test_header_names_the_task_model(tmp_path, meta, expected, absent):
    summary = _summary([("a", 1, 0.1, 30.0), ("a", 2, 0.4, 34.0)])
    header = _report(tmp_path, {**meta, "anchor": "a"}, summary).split("<h2>", 1)[0]
    assert expected in header and absent not in header and "model: " not in header.replace("task model: ", "")


def _showcase(tmp_path: Path, size: tuple[int, int]) -> tuple[list[dict], np.ndarray]:
    folder = tmp_path / SHOWCASE_DIR
    folder.mkdir()
    original = synthetic_photo(*size, seed=2)
    original[: size[0] // 2, : size[1] // 2] = 128  # a flat quarter: the crop goes elsewhere
    Image.fromarray(original).save(folder / "original.png")
    decoded = np.clip(original.astype(int) + 3, 0, 255).astype(np.uint8)
    Image.fromarray(decoded).save(folder / "jpeg-50.png")
    row = {"key": "x.png", "codec": "jpeg", "quality": "50", "bpp": "0.5", "psnr": "38.1", "agree": "", "pred": ""}
    return [row], decoded


def test_fidelity_showcase_crops_at_1_to_1_and_links_the_full_images(tmp_path):
    rows, decoded = _showcase(tmp_path, (300, 700))
    text = _report(tmp_path, {"task": "fidelity", "anchor": "jpeg"}, _summary([("jpeg", 50, 0.5, 38.1)]), rows)
    crops = re.findall(r'<img class=crop alt="(\w+)" width=(\d+) height=(\d+) src="data:image/png;base64,', text)
    assert crops == [("original", str(CROP), str(CROP)), ("jpeg", str(CROP), str(CROP))]
    assert 'href="#full-1"' in text and 'id="full-1"' in text
    overlay = text.split('id="full-1"', 1)[1].split("</div></div>", 1)[0]
    assert re.findall(r'<img loading=lazy alt="[^"]*" src="([^"]+)"', overlay) == [
        "showcase/jpeg-50.png",
        "showcase/original.png",
    ]
    assert "✓" not in text and "top-1" not in text and "→" not in text  # no task model: no prediction
    assert "crops at 1:1: the 256×256 window" in text and "of the 700×300 coded image" in text


def test_crop_window_takes_the_whole_small_image_or_the_most_detailed_part():
    assert crop_window(np.zeros((256, 256, 3), np.uint8)) == (0, 0, 256, 256)
    assert crop_window(np.zeros((100, 180, 3), np.uint8)) == (0, 0, 100, 180)
    image = np.full((600, 800, 3), 128, np.uint8)
    image[400:560, 600:760] = synthetic_photo(160, 160, seed=1)  # the only detail, bottom right
    top, left, height, width = crop_window(image)
    assert (height, width) == (CROP, CROP) and top <= 400 and top + height >= 560 and left <= 600
    assert left + width >= 760 and top + height <= 600 and left + width <= 800


def test_plots_are_wide_with_no_small_text(tmp_path, monkeypatch):
    import matplotlib.figure
    import matplotlib.text

    sizes = []
    original = matplotlib.figure.Figure.savefig

    def spy(figure, *args, **kwargs):
        figure.canvas.draw()
        sizes.extend(t.get_fontsize() for t in figure.findobj(matplotlib.text.Text) if t.get_text().strip())
        return original(figure, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    summary = _summary([("a", 1, 0.42, 30.0), ("a", 2, 0.93, 34.0), ("b", 1, 0.45, 31.0), ("b", 2, 0.9, 35.0)])
    (png,) = plot_curves(summary, tmp_path, title="t")
    assert sizes and min(sizes) >= MIN_FONT_PT >= 11
    assert Image.open(png).width >= 900
    # rates within one decade (0.42–0.93 bpp) still get numbers on the log axis
    assert "<!-- 0.5 -->" in (tmp_path / "psnr.svg").read_text()


def _rows(codec: str, qualities, keys) -> list[dict]:
    return [{"key": k, "codec": codec, "quality": str(q)} for q in qualities for k in keys]


def test_a_rerun_with_fewer_codecs_keeps_the_others_that_cover_its_images():
    rows = _rows("jpeg", (10, 50), "ab") + _rows("webp", (30,), "ab") + _rows("avif", (20,), "a")
    rows += _rows("jpeg", (10,), "c")  # another image (an earlier, larger --limit): not this run's
    shown = report_rows(rows, {("jpeg", "10"), ("jpeg", "50")}, {"a", "b"})
    assert [(r["codec"], r["quality"], r["key"]) for r in shown.rows] == [
        ("jpeg", "10", "a"),
        ("jpeg", "10", "b"),
        ("jpeg", "50", "a"),
        ("jpeg", "50", "b"),
        ("webp", "30", "a"),
        ("webp", "30", "b"),
    ]
    assert (shown.planned, shown.carried, shown.carried_codecs, shown.partial) == (4, 2, ["webp"], ["avif:20"])
    message = resume_message(4, Path("o/results.csv"), shown)
    assert message.startswith("resumed: 4 rows of this run's plan kept from an earlier run in o/results.csv; ")
    assert "2 rows of other codecs from earlier runs in this folder (webp) kept in the report" in message
    assert "1 codec × quality point(s) of earlier runs left out: they lack some of this run's images (avif:20)" in (
        message
    )
    nothing_kept = resume_message(0, Path("r.csv"), shown)
    assert nothing_kept.startswith("r.csv holds results of earlier runs: 2 rows of other codecs")
    assert resume_message(3, Path("r.csv"), report_rows(_rows("jpeg", (10,), "a"), {("jpeg", "10")}, {"a"})) == (
        "resumed: 3 rows of this run's plan kept from an earlier run in r.csv"
    )


def test_report_marks_codecs_of_earlier_runs(tmp_path):
    rows = _rows("jpeg", (10, 50), "a") + _rows("webp", (30, 70), "a")
    shown = report_rows(rows, {("jpeg", "10"), ("jpeg", "50")}, {"a"})
    summary = _summary(
        [("jpeg", 10, 0.3, 30.0), ("jpeg", 50, 0.8, 34.0), ("webp", 30, 0.4, 32.0), ("webp", 70, 0.7, 35.0)]
    )
    text = _report(tmp_path, {"task": "fidelity", "anchor": "jpeg", "images": 1}, summary, carried=shown)
    assert text.count("<td>webp †</td>") == 2  # the summary's two rows of webp
    assert "Besides this run's codecs, this report shows webp (marked †): 2 result rows" in html.unescape(text)
    assert "<td>jpeg †</td>" not in text


def test_reference_rows_of_detection_name_their_map(tmp_path):
    summary = _summary([("a", 1, 0.1, 30.0), ("a", 2, 0.4, 34.0)])
    summary.append({"codec": "(uncompressed image)", "n": 2, "map": 41.0, "map50": 60.5})
    text = _report(tmp_path, {"task": "detect", "anchor": "a"}, summary)
    assert "(uncompressed image): map 41.0 %, map50 60.5 %" in text
