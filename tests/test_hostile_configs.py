"""Issue 23, reproductions 9 and 10: hostile `icm train` configs and `icm bd` inputs end in one `error:` line
(exit status 2) or, for curves that cannot be compared, a "no BD figure — why" row; never a traceback, never
gigabytes."""

from __future__ import annotations

import json
import resource
import time

import pytest
from typer.testing import CliRunner

from icmkit.bench.bd import bd
from icmkit.cli.main import app
from icmkit.errors import ConfigError, IcmError
from icmkit.train.config import MAX_CONFIG_BYTES, load_config


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def assert_one_error_line(result, fragment: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    assert result.stderr.startswith("error:") and fragment in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and len(result.stderr) < 1000, result.stderr[:500]


def billion_laughs() -> str:
    """379 bytes that PyYAML's safe loader expands to 9⁹ strings."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for name, previous in zip("bcdefgh", "abcdefg"):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]")
    lines.append("data: [" + ",".join(["*h"] * 9) + "]")
    return "\n".join(lines) + "\n"


# -- reproduction 9: icm train configs -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, text, fragment",
    [
        ("laughs", billion_laughs(), "aliases (*a) are not allowed"),
        ("deep", "data: " + "[" * 100_000 + "]" * 100_000 + "\n", "nested more than"),
        ("crop0", "crop: 0\ndata: [icmkit:samples]\n", "crop must be in [1, 4096], got 0"),
        ("hugeN", "N: 100000000\ndata: [icmkit:samples]\n", "N must be in"),
        ("negative-batch", "batch_size: -4\ndata: [icmkit:samples]\n", "batch_size must be in"),
        ("long-list", "data: [icmkit:samples]\nlmbdas: [" + ",".join(["0.1"] * 5000) + "]\n", "lmbdas: more than"),
        ("big", "data: [icmkit:samples]\n#" + "x" * MAX_CONFIG_BYTES + "\n", "larger than"),
        ("tag", "data: !!python/object/apply:os.system ['true']\n", "invalid YAML"),
    ],
)
def test_hostile_training_configs_end_in_one_error_line(name, text, fragment, tmp_path):
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    start, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert fragment in str(caught.value) and len(str(caught.value)) < 1000
    assert time.perf_counter() - start < 5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB: no expansion
    assert_one_error_line(run("train", "--config", path, f"out={tmp_path / 'run'}"), fragment)
    assert not (tmp_path / "run").exists()


def test_hostile_overrides_and_special_files_are_refused_in_one_line(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("data: [icmkit:samples]\n")
    assert_one_error_line(run("train", "--config", good, "lmbdas=" + "[" * 50_000), "nested too deeply")
    assert_one_error_line(run("train", "--config", good, "N=" + "[" * 300 + "]" * 300), "N expects int")
    assert_one_error_line(run("train", "--config", "/dev/zero"), "not a regular file")
    assert load_config(good, ["crop=64"]).data.crop == 64  # an ordinary config still loads


# -- reproduction 10: icm bd ---------------------------------------------------------------------------------
def curve(path, rates, metric, name="t"):
    path.write_text(json.dumps({"name": name, "results": {"bpp": rates, "psnr": metric}}))
    return path


def test_deeply_nested_results_json_is_one_error_line(tmp_path):
    anchor = curve(tmp_path / "a.json", [0.1, 0.2, 0.4, 0.8], [28, 31, 34, 37], "a")
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    assert_one_error_line(run("bd", anchor, deep), "nested more than")
    inside = tmp_path / "inside.json"
    inside.write_text('{"name": "x", "results": {"bpp": ' + "[" * 5000 + "]" * 5000 + ', "psnr": [1]}}')
    assert_one_error_line(run("bd", anchor, inside), "nested more than")


def test_a_falling_curve_is_a_row_without_a_figure_not_an_assertion(tmp_path):
    anchor = curve(tmp_path / "a.json", [0.1, 0.2, 0.4, 0.8], [28, 31, 34, 37], "a")
    falling = curve(tmp_path / "t.json", [0.1, 0.2, 0.4, 0.8], [37, 34, 31, 28])
    result = run("bd", anchor, falling)
    assert result.exit_code == 0, result.stderr
    assert "no BD figure" in result.stdout and "metric falls" in result.stdout
    as_json = json.loads(run("bd", anchor, falling, "--json").stdout)
    assert as_json["bd_rate_pct"] is None and "try --monotonic" in as_json["note"]
    for method in ("pchip", "akima", "poly"):  # the API too, on either side
        assert "falls" in bd([0.1, 0.2, 0.4], [37, 34, 31], [0.1, 0.2, 0.4], [28, 31, 34], method=method).note


def test_monotonic_fit_of_unusable_points_is_one_error_line(tmp_path):
    anchor = curve(tmp_path / "a.json", [0.1, 0.2, 0.4, 0.8], [28, 31, 34, 37], "a")
    nan = tmp_path / "nan.json"
    nan.write_text('{"name": "n", "results": {"bpp": [0.1, 0.2, 0.4], "psnr": [NaN, NaN, NaN]}}')
    assert_one_error_line(run("bd", anchor, nan, "--monotonic"), "no finite point")
    with pytest.raises(IcmError, match="got 0"):
        bd([0.1, 0.2], [30.0, 31.0], [-1.0, 0.0], [30.0, 31.0], monotonic=True)


def test_absurd_values_are_refused_before_the_interpolation_runs():
    # Found by the fuzzer: a PSNR of 1e300 made LAPACK's least squares (--method poly) spin forever.
    start = time.perf_counter()
    for method in ("poly", "pchip", "akima"):
        with pytest.raises(IcmError, match="metric values within"):
            bd([0.1, 0.2, 0.4, 0.8], [28, 31, 34, 37], [0.03, 0.04, 1.6], [25.9, 1e300, 36.6], method=method)
        with pytest.raises(IcmError, match="rates must lie in"):
            bd([0.1, 0.2, 0.4], [28, 31, 34], [1e-300, 0.2, 0.4], [28, 31, 34], method=method)
    assert time.perf_counter() - start < 5
