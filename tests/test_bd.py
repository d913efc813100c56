import json
from pathlib import Path

import numpy as np
import pytest

from icmkit.bench.bd import bd, monotonic_fit
from icmkit.bench.results import load_curves
from icmkit.errors import IcmError

DATA = Path(__file__).parent / "data"
ANCHOR = DATA / "bpg_444_x265_ycbcr.json"
TEST = DATA / "compressai-cheng2020-anchor_mse_cuda.json"


def test_reproduces_compressai_reference_figure():
    (anchor,), (test,) = load_curves(ANCHOR, "psnr"), load_curves(TEST, "psnr")
    result = bd(anchor.rates, anchor.metric, test.rates, test.metric, method="pchip")
    assert result.bd_rate_pct == pytest.approx(-18.9, abs=0.3)
    assert result.bd_metric > 0 and result.points == 6
    assert result.overlap_lo == pytest.approx(max(min(anchor.metric), min(test.metric)))


def test_identical_curves_give_zero():
    rates, metric = [0.1, 0.2, 0.4, 0.8], [28.0, 31.0, 34.0, 37.0]
    for method in ("pchip", "poly", "akima"):
        result = bd(rates, metric, rates, metric, method=method)
        assert abs(result.bd_rate_pct) < 1e-6 and abs(result.bd_metric) < 1e-6


def test_half_the_rate_is_minus_fifty_percent():
    rates, metric = np.array([0.1, 0.2, 0.4, 0.8]), [28.0, 31.0, 34.0, 37.0]
    assert bd(rates, metric, rates / 2, metric).bd_rate_pct == pytest.approx(-50.0, abs=1e-6)


def test_points_are_sorted_together_not_independently():
    rates, metric = [0.8, 0.1, 0.4, 0.2], [37.0, 28.0, 34.0, 31.0]
    shuffled = bd(rates, metric, [0.1, 0.2, 0.4, 0.8], [28.0, 31.0, 34.0, 37.0])
    assert abs(shuffled.bd_rate_pct) < 1e-6


def test_monotonic_fit_merges_non_monotonic_accuracy():
    rates, fitted = monotonic_fit(np.array([0.1, 0.2, 0.3, 0.4]), np.array([0.50, 0.70, 0.60, 0.80]))
    assert list(fitted) == pytest.approx([0.50, 0.65, 0.80]) and list(rates) == [0.1, 0.2, 0.4]
    result = bd(
        [0.1, 0.2, 0.3, 0.4], [0.5, 0.7, 0.6, 0.8], [0.05, 0.1, 0.15, 0.2], [0.5, 0.7, 0.6, 0.8], monotonic=True
    )
    assert result.bd_rate_pct == pytest.approx(-50.0, abs=1e-6)


def test_disjoint_curves_give_nan_not_a_number_out_of_thin_air():
    result = bd([0.1, 0.2], [20.0, 22.0], [0.1, 0.2], [30.0, 32.0])
    assert np.isnan(result.bd_rate_pct)


def test_bad_inputs_are_refused(tmp_path):
    with pytest.raises(IcmError):
        bd([0.1], [20.0], [0.1, 0.2], [20.0, 21.0])
    with pytest.raises(IcmError, match="method"):
        bd([0.1, 0.2], [20.0, 22.0], [0.1, 0.2], [20.0, 22.0], method="linear")
    with pytest.raises(IcmError, match="no metric"):
        load_curves(ANCHOR, "top1")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(IcmError, match="CompressAI"):
        load_curves(tmp_path / "x.json", "psnr")


def test_summary_csv_with_several_codecs(tmp_path):
    path = tmp_path / "summary.csv"
    path.write_text("codec,quality,bpp,psnr,top1\na,1,0.1,28,\na,2,0.2,31,\nb,1,0.05,28,\nb,2,0.1,31,\n")
    curves = {c.name: c for c in load_curves(path, "psnr")}
    assert set(curves) == {"a", "b"} and curves["b"].rates == [0.05, 0.1]
    with pytest.raises(IcmError, match="no rows"):
        load_curves(path, "top1")


def test_cli_json_has_the_documented_keys():
    from helpers.cli import run

    result = run("bd", ANCHOR, TEST, "--json")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert {"bd_rate_pct", "bd_metric", "overlap_lo", "overlap_hi", "points"} <= set(record)
    assert record["bd_rate_pct"] == pytest.approx(-18.9, abs=0.3)


def test_cli_picks_anchor_and_test_curves_from_one_summary(tmp_path):
    from helpers.cli import run

    path = tmp_path / "summary.csv"
    rows = [
        f"{name},{q},{rate * scale},{28 + 2 * q}"
        for name, scale in (("a", 1), ("b", 0.5), ("c", 1))
        for q, rate in enumerate((0.1, 0.2, 0.4, 0.8), 1)
    ]
    path.write_text("codec,quality,bpp,psnr\n" + "\n".join(rows) + "\n")
    result = run("bd", path, path, "--anchor-codec", "a", "--codec", "b", "--json")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert (record["codec"], record["anchor"]) == ("b", "a") and record["bd_rate_pct"] == pytest.approx(-50, abs=0.01)
    everything = json.loads(run("bd", path, path, "--anchor-codec", "a", "--json").stdout)
    assert [r["codec"] for r in everything] == ["b", "c"]  # the anchor is not compared with itself
    for args, message in (
        (["--anchor-codec", "zz"], "no psnr curve of codec 'zz'"),
        ([], "name the anchor"),
        (["--anchor-codec", "a", "--codec", "b,zz"], "zz"),
    ):
        failed = run("bd", path, path, *args)
        assert failed.returncode == 2 and message in failed.stderr and "Traceback" not in failed.stderr
