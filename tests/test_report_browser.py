"""The benchmark report as a person sees it: rendered by headless Chromium (Debian's package).

Two reports: one written by the report generator from made-up classification records (times of very
different sizes, a BD table with and without figures), and one of a real ``icm bench --task fidelity`` run
through the entry point on the photos shipped with icmkit (showcase files on disk, no task model).
Measurements come from the page itself: a copy of the report with a script that, once every image has
loaded, writes what it measured into the DOM, which ``--dump-dom`` prints."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from icmkit.bench.plots import MIN_FONT_PT, plot_curves
from icmkit.bench.report import CROP, write_report
from icmkit.bench.runner import SHOWCASE_DIR
from icmkit.bench.summary import BD_COLUMNS, SUMMARY_COLUMNS, bd_table

from conftest import synthetic_photo
from helpers.cli import icm

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--force-device-scale-factor=1",
]

# Appended to a copy of a report: loads every full-size image the overlays link (as clones, so the page's
# load event waits for them), then records sizes, texts and states for the test to read.
MEASURE = """<script>
var clones = [];
document.querySelectorAll('.full img').forEach(function (img) {
  var clone = new Image(); clone.src = img.getAttribute('src'); clone.style.display = 'none';
  document.body.appendChild(clone); clones.push([img.getAttribute('src'), clone]);
});
window.addEventListener('load', function () {
  function box(img) { return {shown: img.clientWidth, shownHeight: img.clientHeight,
    natural: img.naturalWidth, naturalHeight: img.naturalHeight, alt: img.alt}; }
  var found = {plots: [], crops: [], links: [], full: [], bd: []};
  document.querySelectorAll('.plots img').forEach(function (img) { found.plots.push(box(img)); });
  document.querySelectorAll('.gallery img').forEach(function (img) { found.crops.push(box(img)); });
  document.querySelectorAll('.gallery a').forEach(function (a) {
    var target = document.getElementById(a.getAttribute('href').slice(1));
    found.links.push({href: a.getAttribute('href'), target: target ? Array.prototype.map.call(
      target.querySelectorAll('img'), function (img) { return img.getAttribute('src'); }) : null});
  });
  clones.forEach(function (pair) { found.full.push({src: pair[0], natural: pair[1].naturalWidth}); });
  document.querySelectorAll('details').forEach(function (d) {
    found.bd.push({open: d.open, summary: d.querySelector('summary').innerText,
      hiddenTable: !d.querySelector('table').checkVisibility()});
  });
  found.target = Array.prototype.map.call(document.querySelectorAll(':target img'), function (img) {
    var r = img.getBoundingClientRect(); return {src: img.getAttribute('src'), left: r.left, top: r.top,
      width: r.width, height: r.height}; });
  found.text = document.body.innerText;
  var pre = document.createElement('pre'); pre.id = 'measured'; pre.textContent = JSON.stringify(found);
  document.body.appendChild(pre);
});
</script>"""


@pytest.fixture(scope="module")
def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:  # tests install nothing themselves; CI (.ci/run) installs it before pytest
        pytest.skip("needs headless Chromium: sudo apt-get install chromium (Debian/Ubuntu; .ci/run does this)")
    return found


def _chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [binary, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=180
    )


def _measure(binary: str, report: Path, profile: Path, fragment: str = "") -> dict:
    """What the page measures of itself in Chromium (a copy beside the report, so relative links resolve)."""
    probe = report.with_name("probe.html")
    probe.write_text(report.read_text() + MEASURE)
    dom = _chromium(binary, profile, "--window-size=1280,900", "--dump-dom", probe.as_uri() + fragment).stdout
    found = re.search(r'<pre id="measured">(.*?)</pre>', dom, re.S)
    assert found, "the measuring script did not run"
    import html

    return json.loads(html.unescape(found.group(1)))


def _screenshot(binary: str, url: str, profile: Path, path: Path, size: str = "1280,1600") -> np.ndarray:
    _chromium(binary, profile, f"--window-size={size}", f"--screenshot={path}", url)
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


# -- a classification report from the generator ---------------------------------------------------------
CODECS = [  # codec, quality, bpp, psnr, ms_ssim, top1, enc_s (3.3 ms beside 1.05 s), dec_s
    ("hevc444", 42, 0.12, 30.0, 0.94, 40.0, 1.05, 0.2),
    ("hevc444", 32, 0.46, 35.7, 0.98, 70.0, 1.1, 0.21),
    ("hevc444", 22, 1.40, 42.0, 0.99, 75.0, 1.2, 0.25),
    ("jpeg", 10, 0.35, 28.0, 0.90, 35.0, 0.003313, 0.002),
    ("jpeg", 50, 0.80, 33.0, 0.97, 60.0, 0.0036, 0.0021),
    ("jpeg", 90, 1.90, 37.6, 0.99, 74.0, 0.0041, 0.0025),
]


@pytest.fixture(scope="module")
def classify_report(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("classify")
    summary = [
        {
            "codec": c,
            "quality": q,
            "n": 3,
            "bpp": b,
            "psnr": p,
            "ms_ssim": m,
            "top1": t,
            "top5": 90.0,  # flat: a BD on top-5 has no figure ("need at least 2 usable rate points")
            "agree": t,
            "map": "",
            "map50": "",
            "enc_s": e,
            "dec_s": d,
        }
        for c, q, b, p, m, t, e, d in CODECS
    ]
    summary.append({"codec": "(uncompressed image)", "n": 3, "top1": 76.0, "top5": 92.0})
    # The showcase: a 256² crop (as classification codes) and two "decoded" versions of it.
    showcase = out / SHOWCASE_DIR
    showcase.mkdir()
    original = synthetic_photo(CROP, CROP, seed=5)
    Image.fromarray(original).save(showcase / "original.png")
    rows = []
    for codec, quality, bpp in (("hevc444", 32, 0.5), ("jpeg", 50, 0.8)):
        buffer = io.BytesIO()
        Image.fromarray(original).save(buffer, format="JPEG", quality=20)
        Image.open(buffer).save(showcase / f"{codec}-{quality}.png")
        rows.append(
            {"key": "0.png", "codec": codec, "quality": str(quality), "bpp": str(bpp), "psnr": "31.5"}
            | {"pred": "1", "top1": "1", "agree": "1" if codec == "jpeg" else "0"}
        )
    plots = plot_curves(summary, out / "plots", title="browser test")
    meta = {
        "data": "synthetic",
        "task": "classify",
        "images": 3,
        "model": "resnet18",
        "model_weights": "default",
        "anchor": "hevc444",
        "codecs": "hevc444,jpeg",
    }
    table = bd_table(summary, "hevc444")
    assert any(np.isnan(r["bd_rate_pct"]) for r in table) and any(not np.isnan(r["bd_rate_pct"]) for r in table)
    write_report(out, meta, rows, summary, table, plots, SUMMARY_COLUMNS, BD_COLUMNS)
    return out / "report.html"


def test_report_renders_plots_and_tables(chromium, classify_report, tmp_path):
    dom = _chromium(chromium, tmp_path / "profile", "--dump-dom", classify_report.as_uri()).stdout
    assert dom.count("<table>") == 3  # summary, BD figures, BD rows without a figure (folded)
    assert dom.count('src="data:image/svg+xml;base64,') == 5  # psnr, ms_ssim, top1, top5, agree
    assert "jpeg" in dom and "hevc444" in dom

    pixels = _screenshot(chromium, classify_report.as_uri(), tmp_path / "profile2", tmp_path / "shot.png")
    assert pixels.shape[:2] == (1600, 1280)
    plot_area = pixels[150:700, 40:1000]  # the first plot sits below the title, across the page
    coloured = (np.abs(plot_area - plot_area.mean(axis=2, keepdims=True)).sum(axis=2) > 60).mean()
    assert coloured > 0.001, "no coloured curve pixels where the first plot should be"
    assert (plot_area.sum(axis=2) < 600).mean() > 0.01, "no ink (axes, text) where the first plot should be"


def test_plots_are_at_least_900_px_wide_with_readable_text(chromium, classify_report, tmp_path):
    found = _measure(chromium, classify_report, tmp_path / "profile")
    assert len(found["plots"]) == 5
    for plot in found["plots"]:
        assert plot["shown"] >= 900, plot
        # The smallest text of a figure (MIN_FONT_PT, see test_report.py) as the page shows it, in CSS px.
        smallest = MIN_FONT_PT * 4 / 3 * plot["shown"] / plot["natural"]
        assert smallest >= 13, (plot, smallest)
    for png in (classify_report.parent / "plots").glob("*.png"):  # the files alone: wide enough too
        assert Image.open(png).width >= 900, png


def test_classifier_named_times_in_one_precision_bd_notes_folded(chromium, classify_report, tmp_path):
    found = _measure(chromium, classify_report, tmp_path / "profile")
    text = found["text"]
    assert "classifier: resnet18 (pretrained weights)" in text and "model: —" not in text
    # One precision for every time: milliseconds with one decimal (3.3 ms beside 1050.0 ms).
    with classify_report.open() as handle:
        page = handle.read()
    head, body = page.split("<h2>Summary", 1)[1].split("</thead>", 1)
    headers = re.findall(r"<th>(.*?)</th>", head)
    assert "enc ms" in headers and "dec ms" in headers and "enc_s" not in headers
    cells = [re.findall(r"<td>(.*?)</td>", row) for row in body.split("</tbody>")[0].split("<tr>")[1:]]
    times = [row[headers.index("enc ms")] for row in cells if row[0] != "(uncompressed image)"]
    assert times == ["1050.0", "1100.0", "1200.0", "3.3", "3.6", "4.1"]
    # BD rows without a figure: folded under one summary line that counts them; their notes hidden.
    (details,) = found["bd"]
    assert not details["open"] and details["hiddenTable"]
    assert re.fullmatch(
        r"Besides these, BD figure missing for \d+ codec × metric pairs?: not enough points \(fewer than 2 usable "
        r"rate points\) \(\d+\)",
        details["summary"],
    ), details["summary"]
    assert "need at least 2 usable rate points" not in text  # inside the closed <details>: not shown
    assert "same / another top-1" in text and "✓" in text and "✗" in text  # a classification run


# -- a real fidelity bench, through the entry point ------------------------------------------------------
@pytest.fixture(scope="module")
def fidelity_bench(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fidelity") / "bench"
    result = icm(
        "bench",
        "--task",
        "fidelity",
        "--limit",
        "1",
        "--codecs",
        "jpeg:10,50,webp:30,70",
        "--anchor",
        "jpeg",
        "--workers",
        "1",
        "--out",
        out,
    )
    assert result.returncode == 0, result.stderr
    return out


def test_fidelity_report_says_there_is_no_task_model(chromium, fidelity_bench, tmp_path):
    text = _measure(chromium, fidelity_bench / "report.html", tmp_path / "profile")["text"]
    assert "task model: none — a fidelity run scores the decoded pixels only (PSNR, MS-SSIM)" in text
    assert "model: —" not in text and "classifier" not in text
    assert "top-1" not in text and "✓" not in text and "✗" not in text and "→" not in text
    assert "dB" in text and "enc ms" in text


def test_showcase_crops_at_1_to_1_link_to_full_images_beside_the_original(chromium, fidelity_bench, tmp_path):
    found = _measure(chromium, fidelity_bench / "report.html", tmp_path / "profile")
    with (fidelity_bench / "results.csv").open() as handle:
        key = next(csv.DictReader(handle))["key"]
    full = Image.open(fidelity_bench / SHOWCASE_DIR / "original.png")
    assert full.width > CROP and full.height > CROP and key.endswith((".png", ".jpg"))  # cropped, not scaled
    assert [c["alt"] for c in found["crops"]] == ["original", "jpeg", "webp"]
    for crop in found["crops"]:  # one image pixel per CSS pixel: no downscaling
        assert crop["shown"] == crop["natural"] == CROP and crop["shownHeight"] == crop["naturalHeight"] == CROP
    links = {link["href"]: link["target"] for link in found["links"]}
    assert set(links) == {"#full-0", "#full-1", "#full-2"}
    for href in ("#full-1", "#full-2"):  # each decoded image beside the original
        decoded, original = links[href]
        assert original == "showcase/original.png" and decoded.startswith("showcase/") and decoded != original
    for image in found["full"]:  # every full-size file the report links resolves, at its own size
        assert image["natural"] == Image.open(fidelity_bench / image["src"]).width, image

    # Clicked (the link's fragment): the overlay covers the page, the two images side by side at 1:1.
    opened = _measure(chromium, fidelity_bench / "report.html", tmp_path / "p2", "#full-1")["target"]
    assert [image["src"] for image in opened] == links["#full-1"]
    (left, top), width = (round(opened[0]["left"]), round(opened[0]["top"])), round(opened[0]["width"])
    assert opened[1]["left"] >= left + width and opened[1]["top"] == opened[0]["top"]  # beside, not below
    pixels = _screenshot(
        chromium, (fidelity_bench / "report.html").as_uri() + "#full-1", tmp_path / "p3", tmp_path / "s.png", "1280,900"
    )
    assert (pixels[:8, :8] < 40).all()  # the overlay's dark background, not the white page
    decoded = np.asarray(Image.open(fidelity_bench / links["#full-1"][0]).convert("RGB")).astype(int)
    assert width == decoded.shape[1] and round(opened[0]["height"]) == decoded.shape[0]
    shown = pixels[top : top + decoded.shape[0], left : left + width]
    assert np.abs(shown - decoded[: shown.shape[0]]).mean() < 1.5  # pixel for pixel, as far as the screen shows


def test_rerun_with_fewer_codecs_keeps_the_others_in_the_report(chromium, fidelity_bench, tmp_path):
    out = tmp_path / "bench"
    shutil.copytree(fidelity_bench, out)
    result = icm(
        "bench", "--task", "fidelity", "--limit", "1", "--codecs", "jpeg:10,50", "--anchor", "jpeg", "--out", out
    )
    assert result.returncode == 0, result.stderr
    message = " ".join(result.stderr.split())
    assert "resumed: 2 rows of this run's plan kept" in message, message
    assert "2 rows of other codecs from earlier runs in this folder (webp) kept in the report" in message
    found = _measure(chromium, out / "report.html", tmp_path / "profile")
    text = found["text"]
    assert "webp †" in text and "Besides this run's codecs, this report shows webp (marked †)" in text
    assert [crop["alt"] for crop in found["crops"]] == ["original", "jpeg", "webp"]  # webp stays in the showcase
    with (out / "summary.csv").open() as handle:
        codecs = [row["codec"] for row in csv.DictReader(handle)]
    assert codecs == ["jpeg", "jpeg", "webp", "webp"]
