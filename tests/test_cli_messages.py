"""What a newcomer meets first (issue 24): `icm --version`, progress off a terminal, help text, and the messages
of common mistakes — each through the command line (in-process, CliRunner)."""

from __future__ import annotations

import json
import re
import time

import pytest
from PIL import Image
from typer.testing import CliRunner

import icmkit
from icmkit.cli.main import app
from icmkit.cli.progress import Progress, format_duration

from conftest import registered_codecs, synthetic_photo
from train_helpers import make_image_folder, tiny_yaml

COMMANDS = [
    "compress",
    "decompress",
    "info",
    "predict",
    "probe",
    "codecs",
    "zoo",
    "demo",
    "bench",
    "bd",
    "train",
    "cache",
]
EXCEPTION_NAME = re.compile(r"\b[A-Z][A-Za-z]*(Error|Exception)\b")


def run(*args, env: dict | None = None):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False, env=env)


def assert_user_error(result, *fragments: str) -> str:
    """One `error:` line on stderr, status 2, no exception class name; returns the line."""
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    assert result.stderr.startswith("error: "), repr(result.stderr)  # no stray blank line before it
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    assert not EXCEPTION_NAME.search(result.stderr), result.stderr
    return result.stderr.strip()


def save(path, height=40, width=48, seed=5):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(synthetic_photo(height, width, seed=seed)).save(path)
    return path


@pytest.fixture()
def photo_png(tmp_path):
    return save(tmp_path / "kodim03.png")


# -- icm --version ----------------------------------------------------------------------------------------------
def test_version_prints_the_package_version():
    result = run("--version")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"icm {icmkit.__version__}\n"
    assert "--version" in run("--help").stdout


# -- help: no type labels, wrapped by the terminal ----------------------------------------------------------------
def _description_paragraphs(text: str) -> list[list[str]]:
    """The prose above the first panel of a help screen, as paragraphs of stripped lines (the usage line left out)."""
    prose = text.split("╭")[0].splitlines()
    paragraphs, current = [], []
    for line in prose:
        if line.strip():
            current.append(line.strip())
        elif current:
            paragraphs.append(current)
            current = []
    if current:
        paragraphs.append(current)
    return [p for p in paragraphs if not p[0].startswith("Usage:")]


@pytest.fixture()
def terminal_width(monkeypatch):
    """The help's width from COLUMNS, as in a terminal (typer fixes TERMINAL_WIDTH, if set, at its first import)."""
    import typer.rich_utils

    monkeypatch.setattr(typer.rich_utils, "MAX_WIDTH", None, raising=False)


@pytest.mark.parametrize("width", [80, 160])
@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_has_no_type_labels_and_the_terminal_wraps_it(command, width, terminal_width):
    result = run(*([command] if command else []), "--help", env={"COLUMNS": str(width)})
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    assert not re.search(r"<(bool|str|int|float|path|list\[[^\]]*\])>", text, re.IGNORECASE), text
    assert max(len(line) for line in text.splitlines()) <= width, text
    # Each paragraph fills its lines: a line break where the docstring had one ends a line far short of the width.
    shortest = {80: 50, 160: 125}[width]
    for paragraph in _description_paragraphs(text):
        for line in paragraph[:-1]:
            assert len(line) >= shortest, (line, text)


def test_command_list_shows_one_summary_line_per_command_at_160_columns(terminal_width):
    text = run("--help", env={"COLUMNS": "160"}).stdout
    panel = text.split("Commands")[1]
    rows = [line.strip("│ ").split() for line in panel.splitlines() if line.startswith("│")]
    assert [row[0] for row in rows] == COMMANDS, panel  # no continuation lines: each summary fits on its row


# -- progress off a terminal ------------------------------------------------------------------------------------
def test_plain_progress_prints_a_timed_line_with_rate_and_eta(capsys):
    with Progress("work", 10, unit="things", interactive=False, interval=0.05) as progress:
        for _ in range(4):
            time.sleep(0.06)
            progress.advance()
        time.sleep(0.12)
    err = capsys.readouterr().err.splitlines()
    assert len(err) >= 3, err
    assert any(re.fullmatch(r"work: 4/10 things \(40 %\), [0-9.]+/s, elapsed \d+ s, ETA \d+ s", line) for line in err)
    assert re.fullmatch(r"work: 4/10 things in \d+ s", err[-1])


def test_progress_stays_quiet_when_disabled_or_short(capsys):
    with Progress("one file", 1, interactive=False, interval=0, enabled=False) as progress:
        progress.advance()
    with Progress("quick", 3, interactive=False, interval=60) as progress:  # done before the first line is due
        progress.advance(3)
    assert capsys.readouterr().err == ""
    assert (format_duration(42), format_duration(185), format_duration(7620)) == ("42 s", "3 min 05 s", "2 h 07 min")


def test_plain_progress_waits_for_the_first_unit_then_beats_on_a_slow_start(capsys, monkeypatch):
    import icmkit.cli.progress as progress_module

    with Progress("starting", 5, unit="things", interactive=False, interval=0.02):
        time.sleep(0.15)  # nothing done, well before QUIET_START (30 s): a start-up error would stay one line
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(progress_module, "QUIET_START", 0.05)
    with Progress("slow start", 5, unit="things", interactive=False, interval=0.02):
        time.sleep(0.2)
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("slow start: 0/5 things (0 %), elapsed ") and "ETA" not in err[0]
    assert re.fullmatch(r"slow start: 0/5 things in \d+ s", err[-1])


EVERY_UPDATE = {"ICM_PROGRESS_SECONDS": "0"}


def test_bench_reports_progress_on_stderr_when_piped(tmp_path):
    folder = tmp_path / "photos"
    for seed in (1, 2):
        save(folder / f"p{seed}.png", 32, 40, seed)
    result = run(
        "bench", "--task", "fidelity", "--data", folder, "--codecs", "jpeg:50,90", "--anchor", "jpeg",
        "--workers", "1", "-o", tmp_path / "out", env=EVERY_UPDATE,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("icm bench")]
    assert any(re.match(r"icm bench: coding and scoring: 2/4 codings \(50 %\), .*/s, .*ETA", line) for line in lines)
    assert lines[-1].startswith("icm bench: coding and scoring: 4/4 codings in ")
    assert "codings" not in result.stdout  # stdout keeps the summary alone


def test_batch_compress_and_decompress_report_progress(tmp_path):
    folder = tmp_path / "photos"
    for seed in (1, 2):
        save(folder / f"p{seed}.png", seed=seed)
    result = run("compress", folder, "-c", "jpeg", "-o", tmp_path / "coded", env=EVERY_UPDATE)
    assert result.exit_code == 0, result.stderr
    assert re.search(r"^icm compress with jpeg: 1/2 images \(50 %\), .*ETA", result.stderr, re.MULTILINE)
    assert "icm compress with jpeg: 2/2 images in " in result.stderr
    assert "images (" not in result.stdout
    result = run("decompress", tmp_path / "coded", "-o", tmp_path / "decoded", env=EVERY_UPDATE)
    assert result.exit_code == 0, result.stderr
    assert re.search(r"^icm decompress: 1/2 files \(50 %\)", result.stderr, re.MULTILINE)
    single = run("compress", folder / "p1.png", "-c", "jpeg", "-o", tmp_path / "one.jpg", env=EVERY_UPDATE)
    assert single.exit_code == 0 and single.stderr == ""  # one file: no progress


def test_train_reports_progress_on_stderr_and_json_on_stdout(tmp_path):
    images = make_image_folder(tmp_path / "images", count=2)
    config = tiny_yaml(tmp_path / "tiny.yaml", images, tmp_path / "run", steps=2)
    result = run("train", "--config", config, env=EVERY_UPDATE)
    assert result.exit_code == 0, result.stderr
    assert re.search(r"^icm train: 1/2 steps \(50 %\), .*/s, .*ETA .*loss ", result.stderr, re.MULTILINE)
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [r["step"] for r in records if "loss" in r] == [1, 2]


def test_probe_reports_progress_on_stderr(tmp_path):
    folder = tmp_path / "labelled"
    lines = ["file,class_index"]
    for seed, label in ((1, 7), (2, 42)):
        save(folder / f"{seed}.png", 48, 64, seed)
        lines.append(f"{seed}.png,{label}")
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")
    result = run(
        "probe", "--train", folder, "--eval", folder, "--codec", "none", "--model-weights", "none",
        "--epochs", "2", "--crop", "64", env=EVERY_UPDATE,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert re.search(r"^icm probe: coding and pooling: 2/4 images \(50 %\)", result.stderr, re.MULTILINE)
    assert "images" not in result.stdout.split("linear probe")[0]


# -- messages ---------------------------------------------------------------------------------------------------
def test_bench_on_unlabelled_photos_suggests_the_fidelity_task(tmp_path):
    folder = tmp_path / "photos"
    save(folder / "a.png")
    result = run("bench", "--data", folder, "--codecs", "jpeg", "--anchor", "jpeg", "-o", tmp_path / "out")
    line = assert_user_error(result, f"{folder}: images without labels", "--task fidelity")
    assert "labels.csv" in line and not (tmp_path / "out" / "results.csv").exists()


def test_fidelity_bench_of_a_feature_codec_gets_one_clear_message(tmp_path):
    result = run("bench", "--task", "fidelity", "--codecs", "icm-dicm-lite0", "-o", tmp_path / "out")
    line = assert_user_error(result, "icm-dicm-lite0 is a feature codec", "--task classify, detect and segment")
    assert "anchor" not in line and "cannot score" in line


def test_info_names_the_file_and_what_it_is(tmp_path, photo_png):
    text = tmp_path / "notes.txt"
    text.write_text("hello, not a stream")
    assert_user_error(run("info", photo_png), f"{photo_png}: a PNG image, not a stream", "icm compress")
    assert_user_error(run("info", text), f"{text}: not an .icm stream")


def test_info_of_a_standard_stream_shows_the_quality_a_filter_reads(tmp_path, photo_png):
    jpeg = tmp_path / "k.jpg"
    with Image.open(photo_png) as image:
        image.convert("RGB").save(jpeg, quality=37)
        size = image.size
    result = run("info", jpeg, "--json")
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert (record["format"], record["codec"], record["quality"]) == ("a JPEG image", "jpeg", 37.0)
    assert (record["width"], record["height"]) == size and record["bytes"] == jpeg.stat().st_size
    assert isinstance(record["restore_with"], list)
    damaged = tmp_path / "damaged.jpg"
    damaged.write_bytes(jpeg.read_bytes()[:40])  # tables cut off: one clean error
    result = run("info", damaged)
    assert result.exit_code == 2 and result.stderr.startswith(f"error: {damaged}: ")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_decompress_of_a_png_says_it_is_a_png(photo_png):
    result = run("decompress", photo_png)
    assert_user_error(result, f"{photo_png}: a PNG image, not a compressed stream", f"icm compress {photo_png}")
    assert "signature" not in result.stderr
    assert not photo_png.with_suffix(".decoded.png").exists()


def test_compress_of_a_text_file_names_it_without_an_exception_class(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello, not an image")
    result = run("compress", text, "-c", "jpeg", "-o", tmp_path / "out.jpg")
    assert_user_error(result, f"{text}: not an image format icmkit reads")
    assert not (tmp_path / "out.jpg").exists()


@pytest.mark.parametrize("option", ["--target-bytes", "--target-bpp"])
def test_zero_target_is_shown_as_an_integer(option, photo_png, tmp_path):
    line = assert_user_error(run("compress", photo_png, "-c", "jpeg", option, "0", "-o", tmp_path / "o.jpg"), "got 0")
    assert not line.endswith("0.0")


def test_a_file_given_twice_is_coded_once(tmp_path):
    photo = save(tmp_path / "photos" / "kodim03.png")
    other = tmp_path / "photos" / "sub" / ".." / "kodim03.png"  # another spelling of the same file
    save(tmp_path / "photos" / "sub" / "b.png")
    out = tmp_path / "out"
    result = run("compress", photo, photo, other, "-c", "jpeg", "-o", out)
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["kodim03.jpg"] and "1 of 1 images" in result.stdout
    # A folder and a file inside it: the file is coded once, where the folder puts it.
    again = run("compress", tmp_path / "photos", photo, "-c", "jpeg", "-o", tmp_path / "again")
    assert again.exit_code == 0, again.stderr
    assert again.stdout.count(f"{photo} →") == 1 and "2 of 2 images" in again.stdout
    assert sorted(p.relative_to(tmp_path / "again").as_posix() for p in (tmp_path / "again").rglob("*.jpg")) == [
        "kodim03.jpg",
        "sub/b.jpg",
    ]


def test_decompress_of_a_folder_mirrors_compress(tmp_path):
    photos = tmp_path / "photos"
    save(photos / "a.png", seed=1)
    save(photos / "sub" / "b.png", seed=2)
    (photos / "notes.txt").write_text("not an image")
    coded = tmp_path / "coded"
    assert run("compress", photos, "-c", "jpeg", "-o", coded).exit_code == 0
    assert run("compress", photos / "a.png", "-c", "webp", "-o", coded / "c.webp").exit_code == 0
    (coded / "notes.txt").write_text("left out: no stream extension")
    (coded / "broken.jpg").write_text("a text file named like a JPEG")

    result = run("decompress", coded, "-o", tmp_path / "decoded")
    assert result.exit_code == 2, result.stderr  # broken.jpg: one error line, the others decoded
    decoded = sorted(p.relative_to(tmp_path / "decoded").as_posix() for p in (tmp_path / "decoded").rglob("*.png"))
    assert decoded == ["a.decoded.png", "c.decoded.png", "sub/b.decoded.png"]
    assert Image.open(tmp_path / "decoded" / "sub" / "b.decoded.png").size == (48, 40)
    assert "3 of 4 files decoded" in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"{coded / 'broken.jpg'}:" in errors[0] and not EXCEPTION_NAME.search(errors[0])
    assert f"note: {coded}: left out 1 file that is not a compressed stream ({coded / 'notes.txt'})" in result.stderr

    # Beside each input, with the single-file naming rule; and the outputs are never silently replaced.
    (coded / "broken.jpg").unlink()
    beside = run("decompress", coded)
    assert beside.exit_code == 0, beside.stderr
    assert (coded / "a.decoded.png").is_file() and (coded / "sub" / "b.decoded.png").is_file()
    assert_user_error(run("decompress", coded), "already exists", "--skip-existing")
    skipped = run("decompress", coded, "--skip-existing")
    assert skipped.exit_code == 0 and "skipping 3 of 3" in skipped.stderr
    assert_user_error(run("decompress", coded, "-c", "nope", "-o", tmp_path / "other"), "unknown codec 'nope'")


def test_decompress_of_a_folder_without_streams_is_an_error(tmp_path):
    save(tmp_path / "photos" / "a.png")
    assert_user_error(run("decompress", tmp_path / "photos"), "folder holds no compressed streams")


@pytest.fixture()
def tiny_vr(tiny_vr_codec):
    with registered_codecs(tiny_vr_codec):
        yield tiny_vr_codec.name


def test_info_shows_a_quality_as_compress_prints_it(tiny_vr, photo_png, tmp_path):
    stream = tmp_path / "q.icm"
    assert run("compress", photo_png, "-c", tiny_vr, "-q", "2.725", "-o", stream).exit_code == 0
    result = run("info", stream)
    assert result.exit_code == 0, result.stderr
    quality = next(line.split() for line in result.stdout.splitlines() if line.split()[:1] == ["quality"])
    assert quality == ["quality", "2.725"]
    assert re.search(r"bpp\s+\d+\.\d{4}\b", result.stdout)


def test_zoo_shows_what_a_family_shares_once():
    from dataclasses import asdict

    from icmkit.zoo import families, family

    result = run("zoo", env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.stderr
    rows = [asdict(entry) for name in families() for entry in family(name)]
    for name in families():
        members = [row for row in rows if row["family"] == name]  # one row for a filter, several for codecs
        assert members
        data = members[0]["data"]
        holders = len({row["family"] for row in rows if row["data"] == data})  # families sharing the same text
        assert result.stdout.count(data) == holders, (name, result.stdout)
        assert result.stdout.count(members[0]["command"]) == 1


def test_info_of_an_hevc444_stream_reads_its_raw_header_and_slice_qp(tmp_path):
    from icmkit.codecs.registry import get_codec

    stream = tmp_path / "photo.hevc"
    stream.write_bytes(get_codec("hevc444").encode(synthetic_photo(40, 56, seed=2), 33))
    result = run("info", stream, "--json")
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert (record["codec"], record["width"], record["height"], record["quality"]) == ("hevc444", 56, 40, 33.0)
    assert "hevc444+mmd" in record["restore_with"]
