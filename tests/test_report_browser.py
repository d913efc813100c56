"""The benchmark report as a person sees it: rendered by headless Chromium (Debian's package)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from icmkit.bench.plots import plot_curves
from icmkit.bench.report import write_report
from icmkit.bench.summary import BD_COLUMNS, SUMMARY_COLUMNS, bd_table

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:  # tests install nothing themselves; CI (.ci/run) installs it before pytest
        pytest.skip("needs headless Chromium: sudo apt-get install chromium (Debian/Ubuntu; .ci/run does this)")
    return found


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    summary = [
        {
            "codec": c,
            "quality": q,
            "n": 3,
            "bpp": b,
            "psnr": p,
            "ms_ssim": m,
            "top1": t,
            "top5": 90.0,
            "agree": t,
            "map": "",
            "map50": "",
            "enc_s": 0.01,
            "dec_s": 0.01,
        }
        for c, q, b, p, m, t in [
            ("hevc444", 42, 0.12, 30.0, 0.94, 40.0),
            ("hevc444", 32, 0.46, 35.7, 0.98, 70.0),
            ("hevc444", 22, 1.40, 42.0, 0.99, 75.0),
            ("jpeg", 10, 0.35, 28.0, 0.90, 35.0),
            ("jpeg", 50, 0.80, 33.0, 0.97, 60.0),
            ("jpeg", 90, 1.90, 37.6, 0.99, 74.0),
        ]
    ]
    plots = plot_curves(summary, out / "plots", title="browser test")
    write_report(
        out,
        {"task": "classify", "anchor": "hevc444"},
        [],
        summary,
        bd_table(summary, "hevc444"),
        plots,
        SUMMARY_COLUMNS,
        BD_COLUMNS,
    )
    return out / "report.html"


def _chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [binary, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=180
    )


def test_report_renders_plots_and_tables(chromium, report, tmp_path):
    dom = _chromium(chromium, tmp_path / "profile", "--dump-dom", report.as_uri()).stdout
    assert dom.count("<table>") == 2 and dom.count('src="data:image/png;base64,') >= 4
    assert "jpeg" in dom and "hevc444" in dom

    shot = tmp_path / "shot.png"
    _chromium(chromium, tmp_path / "profile2", "--window-size=1280,1600", f"--screenshot={shot}", report.as_uri())
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.shape[:2] == (1600, 1280)
    plot_area = pixels[150:700, 40:620]  # the first plot sits below the title
    coloured = (np.abs(plot_area - plot_area.mean(axis=2, keepdims=True)).sum(axis=2) > 60).mean()
    assert coloured > 0.001, "no coloured curve pixels where the first plot should be"
    assert (plot_area.sum(axis=2) < 600).mean() > 0.01, "no ink (axes, text) where the first plot should be"
