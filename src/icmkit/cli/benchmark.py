"""`icm bench` and `icm bd`: rate vs fidelity vs machine accuracy, and Bjøntegaard deltas."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

# Light imports only: numpy, Pillow, torch and the codecs load inside the commands, after argument parsing,
# so that `icm --help` and every `icm COMMAND --help` answer at once (a test checks what they import).
from icmkit.cli._common import (
    console,
    err_console,
    user_errors,
)
from icmkit.cli.progress import Progress
from icmkit.defaults import DEFAULT_BENCH_CODECS
from icmkit.errors import IcmError


@user_errors
def bench(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output folder (results, summary, BD, plots, report); one run each.")
    ] = Path("icm-bench"),
    data: Annotated[
        Path | None,
        typer.Option(
            help="A folder of images (fidelity), a labelled folder (classify), a COCO folder (detect, "
            "segment), or 'kodak' (downloaded once). Default: the photos shipped with icmkit."
        ),
    ] = None,
    task: Annotated[str, typer.Option(help="classify, detect, segment or fidelity.")] = "classify",
    codecs: Annotated[
        str, typer.Option(help="Codecs and qualities, e.g. jpeg,hevc444:42,37,icm-mse.")
    ] = DEFAULT_BENCH_CODECS,
    model: Annotated[
        str | None,
        typer.Option(
            help="Task model: a timm / torchvision classifier (default tf_efficientnet_lite0) or a "
            "torchvision COCO detector (default fasterrcnn_resnet50_fpn; maskrcnn_resnet50_fpn for segment)."
        ),
    ] = None,
    model_weights: Annotated[
        str, typer.Option(help="'default', 'none' (random init) or a local weights file.")
    ] = "default",
    anchor: Annotated[str, typer.Option(help="Codec every other one is compared against (BD).")] = "hevc444",
    limit: Annotated[int | None, typer.Option(help="Use only the first N images.")] = None,
    workers: Annotated[int, typer.Option(help="Coding processes.")] = 2,
    detector_min_size: Annotated[
        int, typer.Option(help="Shorter side the detector resizes images to (torchvision's default 800).")
    ] = 800,
    adaptive: Annotated[
        str | None,
        typer.Option(
            "--adaptive",
            help="keep-top1 or keep-top5: also bench each codec with its quality chosen per image to keep the "
            "classifier's decision (CODEC@keep-top1, a tolerance sweep of 4 levels); bd.csv adds adaptive vs fixed.",
        ),
    ] = None,
    adaptive_model: Annotated[
        str | None,
        typer.Option(
            "--adaptive-model",
            help="The classifier whose decision --adaptive keeps (default tf_efficientnet_lite0); score with "
            "another --model to separate real gains from an oracle effect.",
        ),
    ] = None,
) -> None:
    """Rate vs fidelity vs machine accuracy for codecs: results.csv, summary.csv, bd.csv, plots, report.html.

    An interrupted run resumes from what its --out folder already holds. Progress goes to stderr: a bar on a
    terminal, otherwise a line every few seconds (done / total, rate, ETA).
    """
    from contextlib import ExitStack

    from icmkit.bench.benchmark import BenchOptions, run_bench
    from icmkit.bench.datasets import DatasetError
    from icmkit.bench.summary import SUMMARY_COLUMNS, display_header, display_value

    _refuse_feature_codecs(task, codecs)

    options = BenchOptions(
        out=out,
        data=data,
        task=task,
        codecs=codecs,
        model=model,
        model_weights=None if model_weights == "none" else model_weights,
        anchor=anchor,
        limit=limit,
        workers=workers,
        detector_min_size=detector_min_size,
        adaptive=adaptive,
        adaptive_model=adaptive_model,
    )
    with ExitStack() as stack:

        def start(total: int):
            from icmkit.train.distributed import launched_rank

            # Under torchrun only rank 0 shows progress (of its own shard).
            progress = Progress("icm bench: coding and scoring", total, unit="codings", enabled=launched_rank() == 0)
            stack.enter_context(progress)
            return progress.advance

        def resumed(rows: int, path: Path, earlier=None) -> None:
            from icmkit.bench.summary import resume_message

            err_console.print(resume_message(rows, path, earlier), highlight=False)

        try:
            outcome = run_bench(options, progress=start, resumed=resumed)
        except DatasetError:
            if task == "classify" and _unlabelled_images(data):
                raise DatasetError(
                    f"{data}: images without labels (no labels.csv, no ImageNet wnid sub-folders), which --task "
                    "classify needs; for rate and fidelity alone (bpp, PSNR, MS-SSIM) pass --task fidelity"
                ) from None
            raise
    if outcome is None:  # a torchrun rank other than 0: rank 0 reports
        return
    table = Table(title=f"summary ({outcome.seconds:.0f} s)")
    columns = [c for c in SUMMARY_COLUMNS if any(r.get(c, "") != "" for r in outcome.summary)]
    for column in columns:
        table.add_column(display_header(column))  # the report's headings and precisions (times in ms)
    for row in outcome.summary:
        table.add_row(*[display_value(c, row[c]) for c in columns])
    console.print(table)
    for row in outcome.bd:
        if row["metric"] in ("psnr", "top1", "map"):
            console.print(_bd_line(row), highlight=False)
    console.print(f"report: {outcome.report}", highlight=False)


def _refuse_feature_codecs(task: str, codecs: str) -> None:
    """A fidelity bench of feature codecs: one message saying why, before the anchor or anything else is checked."""
    if task != "fidelity":
        return
    from icmkit.bench.plan import parse_codec_spec
    from icmkit.codecs.base import CodecKind
    from icmkit.codecs.registry import get_codec

    names = list(dict.fromkeys(plan.codec for plan in parse_codec_spec(codecs)))
    features = [name for name in names if get_codec(name).kind == CodecKind.FEATURE]
    if features:
        which = f"{', '.join(features)} {'is a feature codec' if len(features) == 1 else 'are feature codecs'}"
        raise IcmError(
            f"{which}: feature codecs decode to backbone features, not pixels, so a fidelity bench (PSNR, MS-SSIM) "
            "cannot score them; they serve --task classify, detect and segment (or leave them out of --codecs)"
        )


def _unlabelled_images(data: Path | None) -> bool:
    """``data`` is a folder of images with nothing that labels them (what --task fidelity benches)."""
    from icmkit.bench.datasets import image_folder, imagenet_wnids

    if data is None or not data.is_dir() or (data / "labels.csv").exists():
        return False
    wnids = set(imagenet_wnids())
    if any(p.is_dir() and p.name in wnids for p in data.iterdir()):
        return False
    try:
        return bool(image_folder(data).samples)
    except IcmError:
        return False


@user_errors
def bd(
    anchor_file: Annotated[Path, typer.Argument(help="Anchor results: icmkit summary.csv or CompressAI JSON.")],
    test_file: Annotated[Path, typer.Argument(help="Test results, same formats.")],
    metric: Annotated[str, typer.Option(help="Metric column: psnr, ms_ssim, top1, map, …")] = "psnr",
    method: Annotated[str, typer.Option(help="Interpolation: pchip (CTC), poly (VCEG-M33 cubic) or akima.")] = "pchip",
    monotonic: Annotated[bool, typer.Option(help="Isotonic fit first (for non-monotonic accuracy curves).")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object (or a list, for several codecs).")
    ] = False,
    anchor_codec: Annotated[
        str | None,
        typer.Option(
            help="The anchor curve's codec name, when ANCHOR_FILE holds several (e.g. one summary.csv for both)."
        ),
    ] = None,
    codec: Annotated[
        str | None, typer.Option(help="Comma-separated codec names: only these curves of TEST_FILE.")
    ] = None,
) -> None:
    """Bjøntegaard-delta rate and metric of every curve in TEST_FILE against ANCHOR_FILE.

    Both may be the same summary.csv:

    icm bd s.csv s.csv --anchor-codec icm-mse --codec icm-mmd --metric top1
    """
    from icmkit.bench.bd import bd as compute_bd
    from icmkit.bench.results import load_curves

    anchors = load_curves(anchor_file, metric)
    if anchor_codec is not None:
        anchors = [c for c in anchors if c.name == anchor_codec]
        if not anchors:
            raise IcmError(f"{anchor_file}: no {metric} curve of codec {anchor_codec!r}")
    if len(anchors) != 1:
        raise IcmError(f"{anchor_file}: holds {len(anchors)} codecs; name the anchor with --anchor-codec")
    anchor = anchors[0]
    tests = load_curves(test_file, metric)
    if codec is not None:
        wanted = [name for name in codec.split(",") if name]
        missing = sorted(set(wanted) - {t.name for t in tests})
        if missing:
            raise IcmError(f"{test_file}: no {metric} curve of codec(s) {', '.join(missing)}")
        tests = [t for t in tests if t.name in wanted]
    elif anchor_file.resolve() == test_file.resolve():
        tests = [t for t in tests if t.name != anchor.name]
    results = []
    for test in tests:
        result = compute_bd(anchor.rates, anchor.metric, test.rates, test.metric, method=method, monotonic=monotonic)
        results.append({"codec": test.name, "anchor": anchor.name, "metric": metric, **result.as_dict()})
    if as_json:  # NaN (no BD figure; see "note") as null: strict JSON
        results = [{k: None if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()} for r in results]
        print(json.dumps(results[0] if len(results) == 1 else results))
        return
    for row in results:
        console.print(_bd_line(row), highlight=False)


def _bd_line(row: dict) -> str:
    """One BD row as text; a NaN row says why there is no figure (no overlap, a flat curve)."""
    head = f"{row['codec']} vs {row['anchor']} on {row['metric']} ({row['method']})"
    if math.isnan(row["bd_rate_pct"]) or math.isnan(row["bd_metric"]):
        return f"{head}: no BD figure — {row.get('note') or 'the curves cannot be compared'}"
    return (
        f"{head}: BD-rate {row['bd_rate_pct']:+.2f} %, BD-{row['metric']} {row['bd_metric']:+.4f}, overlap "
        f"{row['overlap_lo']:.4g}…{row['overlap_hi']:.4g}, {row['points']} points"
    )
