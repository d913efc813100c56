"""``icm`` — the command line. A thin layer over :mod:`icmkit.api`; every command has ``--help``."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

# Light imports only: numpy, Pillow, torch and the codecs load inside the commands, after argument parsing,
# so that `icm --help` and every `icm COMMAND --help` answer at once (a test checks what they import).
from icmkit import bitstream
from icmkit.cli._common import check_output, console, err_console, is_interactive, user_errors
from icmkit.defaults import DEFAULT_BENCH_CODECS, DEFAULT_CODEC
from icmkit.digest import DIGEST_BYTES
from icmkit.errors import BitstreamError, IcmError, InputImageError, OutputExistsError
from icmkit.fileio import atomic_write
from icmkit.limits import max_pixels

app = typer.Typer(
    name="icm",
    help="icmkit — image coding for machines: compress, decompress, inspect and compare codecs; train learned ones.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

CodecOption = Annotated[str, typer.Option("--codec", "-c", help="Codec name (see `icm codecs`).")]
QualityOption = Annotated[
    int | None, typer.Option("--quality", "-q", help="Quality value in the codec's own knob (see `icm codecs`).")
]
DECODED_SUFFIX = ".decoded.png"  # never the name of the image a stream was made from
ForceOption = Annotated[
    bool, typer.Option("--force", "-f", help="Overwrite existing output files (never a file this command reads).")
]


def _expand_inputs(inputs: list[Path]) -> list[tuple[Path, Path]]:
    """Every image to code, with the path its output takes relative to the output folder
    (a folder's images keep their sub-folders; a file given by name keeps its name)."""
    from icmkit.image import IMAGE_SUFFIXES

    files: list[tuple[Path, Path]] = []
    for item in inputs:
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise InputImageError(f"{item}: folder holds no images")
            files.extend((p, p.relative_to(item)) for p in found)
        elif item.exists():
            files.append((item, Path(item.name)))
        else:
            raise InputImageError(f"{item}: no such file or folder")
    return files


def _plan_outputs(files: list[tuple[Path, Path]], output: Path | None, extension: str, many: bool) -> list[Path]:
    if not many:
        source = files[0][0]
        if output is None:
            return [source.with_suffix(extension)]
        return [output / (source.stem + extension) if output.is_dir() else output]
    if output is None:
        targets = [source.with_suffix(extension) for source, _ in files]
    else:
        if output.exists() and not output.is_dir():
            raise OutputExistsError(f"{output}: several inputs need an output folder, not a file")
        targets = [output / relative.with_suffix(extension) for _, relative in files]
    _refuse_collisions([source for source, _ in files], targets)
    return targets


def _refuse_collisions(sources: list[Path], targets: list[Path]) -> None:
    """Two inputs whose outputs are one file (``a.png`` and ``a.jpg`` → ``a.icm``; ``x/a.png`` and ``a.png``
    given by name → ``OUT/a.icm``): the second would silently replace the first."""
    first: dict[Path, Path] = {}
    for source, target in zip(sources, targets):
        key = Path(os.path.normcase(os.path.abspath(target)))
        if key in first:
            raise OutputExistsError(
                f"{first[key]} and {source} would both be written to {target}; compress them separately, or rename one"
            )
        first[key] = source


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=not enabled,
    )


@app.command()
@user_errors
def compress(
    inputs: Annotated[list[Path], typer.Argument(help="Image files or folders of images.", show_default=False)],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Output file (one input) or folder (several).")
    ] = None,
    codec: CodecOption = DEFAULT_CODEC,
    quality: QualityOption = None,
    force: ForceOption = False,
    skip_existing: Annotated[
        bool,
        typer.Option(
            "--skip-existing",
            help="Leave inputs whose output exists (resume an interrupted batch: "
            "outputs are written whole or not at all).",
        ),
    ] = False,
) -> None:
    """Compress images. Learned codecs write .icm files; conventional codecs their native format
    (default output: the input's name with that extension, beside it)."""
    if force and skip_existing:
        raise IcmError("--force and --skip-existing contradict each other; pass one")
    from icmkit import api
    from icmkit.codecs.registry import get_codec

    chosen = get_codec(codec)
    chosen.require_available()
    quality = chosen.quality.validate(quality)
    planned = _expand_inputs(inputs)
    files = [source for source, _ in planned]
    many = len(files) > 1 or any(p.is_dir() for p in inputs)
    targets = _plan_outputs(planned, output, chosen.extension, many)
    for target in targets:
        hint = "use --force to overwrite, or --skip-existing to keep it" if many else "use --force to overwrite"
        check_output(
            target,
            files,
            force or (skip_existing and target.is_file()),
            create_parent=many and output is not None,
            hint=hint,
        )
    if skip_existing:
        pending = [(s, t) for s, t in zip(files, targets) if not t.is_file()]
        if len(pending) < len(files):
            err_console.print(
                f"skipping {len(files) - len(pending)} of {len(files)} inputs whose output exists", highlight=False
            )
        files, targets = [s for s, _ in pending], [t for _, t in pending]

    failures = 0
    total_bytes = total_pixels = 0
    with _progress(many) as progress:
        task = progress.add_task(f"compressing with {chosen.name}", total=len(files))
        for source, target in zip(files, targets):
            try:
                image = api.read_image(source)
                data = chosen.encode(image, quality)
                target.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(target, data)
            except IcmError as exc:
                if not many:
                    raise
                failures += 1
                err_console.print(f"[red]error:[/] {exc}", highlight=False)
            else:
                pixels = image.shape[0] * image.shape[1]
                total_bytes += len(data)
                total_pixels += pixels
                console.print(
                    f"{source} → {target}  {len(data):,} bytes  {8 * len(data) / pixels:.4f} bpp", highlight=False
                )
            progress.advance(task)
    if many and files:
        console.print(
            f"{len(files) - failures} of {len(files)} images, {total_bytes:,} bytes, "
            f"{8 * total_bytes / max(total_pixels, 1):.4f} bpp overall",
            highlight=False,
        )
    if failures:
        raise typer.Exit(code=2)


@app.command()
@user_errors
def decompress(
    input: Annotated[Path, typer.Argument(help="A compressed file (.icm or a conventional codec's file).")],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Output file: a PNG for images (default IN.decoded.png, so that "
            "decoding photo.icm never replaces photo.png); for feature streams a .safetensors of the "
            "decoded features (default IN.features.safetensors).",
        ),
    ] = None,
    codec: Annotated[
        str | None, typer.Option("--codec", "-c", help="Codec to decode with (default: read from the file).")
    ] = None,
    force: ForceOption = False,
) -> None:
    """Decompress a file to a lossless PNG (default IN.decoded.png), or a feature stream to its decoded
    features (.safetensors: tensor "features" (1, C, h, w) float32 + metadata stride, backbone, split,
    head_digest, image_size, codec, quality), which `icm predict` reads."""
    from icmkit import api
    from icmkit.codecs.base import FeatureMaps
    from icmkit.image import encode_png

    data = api.read_stream_file(input)
    if _is_feature_stream(data, codec):
        target = output if output is not None else input.with_suffix(".features.safetensors")
        if target.suffix.lower() != ".safetensors":
            raise OutputExistsError(
                f"{input} is a feature stream: it decodes to backbone features, not an image; name the output "
                "*.safetensors (or leave out -o)"
            )
    else:
        target = output if output is not None else input.with_suffix(DECODED_SUFFIX)
        if target.suffix.lower() != ".png":
            raise OutputExistsError(f"{target}: decoded images are written as PNG; name the output *.png")
    check_output(target, [input], force)
    decoded = api.codec_for_stream(data, codec, how_to_name="--codec NAME").decode(data)
    if isinstance(decoded, FeatureMaps):
        from icmkit.feature_io import FEATURES, save_features

        save_features(decoded, target)
        height, width = decoded.image_size
        shape = "×".join(str(n) for n in tuple(decoded.tensors[FEATURES].shape)[1:])
        console.print(
            f"{input} → {target}  features {shape} (stride {decoded.strides[FEATURES]}) of a {width}×{height} image  "
            f"{8 * len(data) / (width * height):.4f} bpp",
            highlight=False,
        )
        return
    atomic_write(target, encode_png(decoded))
    height, width = decoded.shape[:2]
    console.print(f"{input} → {target}  {width}×{height}  {8 * len(data) / (width * height):.4f} bpp", highlight=False)


def _is_feature_stream(data: bytes, codec: str | None) -> bool:
    """Whether ``data`` decodes to features: the codec asked for is a feature codec, or the verified
    ``.icm`` header says kind ``feature`` (a corrupt stream fails here, before any output is planned)."""
    from icmkit.codecs.base import CodecKind
    from icmkit.codecs.registry import get_codec

    if codec is not None:
        return get_codec(codec).kind == CodecKind.FEATURE
    if bitstream.peek_is_icm(data):
        header, _ = bitstream.unpack(data, max_pixels=max_pixels())
        return header.kind == CodecKind.FEATURE.value
    return False


@app.command()
@user_errors
def info(
    input: Annotated[Path, typer.Argument(help="An .icm file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Show an .icm file's header: codec, quality, size, streams, rate, and whether the weights match.
    Feature streams also show the backbone, split, coded and decoded feature shape, stride and head digest."""
    from icmkit import api
    from icmkit.codecs.base import CodecKind

    data = api.read_stream_file(input)
    header, _ = bitstream.unpack(data, max_pixels=max_pixels())
    fields = {
        "file": str(input),
        "format_version": header.version,
        "kind": header.kind,
        "codec": header.codec,
        "quality": header.quality,
        "weights_digest": header.digest.hex(),
        "width": header.width,
        "height": header.height,
        "channels": header.channels,
        "padding": [header.pad_bottom, header.pad_right],
    }
    if header.kind == CodecKind.FEATURE.value:
        fields.update(_feature_fields(header))
    fields.update(
        {
            "streams": list(header.stream_lengths),
            "bytes": len(data),
            "bpp": 8 * len(data) / (header.width * header.height),
            "weights": _weights_status(header),
        }
    )
    if as_json:
        print(json.dumps(fields))
        return
    table = Table(show_header=False, box=None)
    for key, value in fields.items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else escape(str(value)))
    console.print(table)


def _feature_fields(header: bitstream.IcmHeader) -> dict:
    """A feature stream's ``extra`` header (b = backbone, s = split, h = head digest, f = coded C×h×w)."""
    import re

    extra = bitstream.unpack_extra(header.extra)
    missing = [key for key in "bsfh" if key not in extra]
    if missing:
        raise BitstreamError(f"malformed feature stream header (no {', '.join(missing)} field)")
    try:
        backbone, split, shape = (extra[key].decode("ascii") for key in "bsf")
    except UnicodeDecodeError:
        raise BitstreamError("malformed feature stream header (non-ASCII names)") from None
    match = re.fullmatch(r"([1-9][0-9]*)x([1-9][0-9]*)x([1-9][0-9]*)", shape)
    padded_h, padded_w = header.height + header.pad_bottom, header.width + header.pad_right
    if match is None or len(extra["h"]) != DIGEST_BYTES:
        raise BitstreamError("malformed feature stream header (feature shape or head digest)")
    channels, rows, cols = (int(v) for v in match.groups())
    if padded_h % rows or padded_w % cols or padded_h // rows != padded_w // cols:
        raise BitstreamError(
            f"malformed feature stream header (features {shape} do not tile a {padded_w}×{padded_h} padded image)"
        )
    stride = padded_h // rows
    return {
        "backbone": backbone,
        "split": split,
        "feature_shape": shape,
        "decoded_shape": f"{channels}x{-(-header.height // stride)}x{-(-header.width // stride)}",
        "stride": stride,
        "head_digest": extra["h"].hex(),
    }


def _weights_status(header: bitstream.IcmHeader) -> str:
    from icmkit.codecs.registry import get_codec

    try:
        codec = get_codec(header.codec)
        model = getattr(codec, "model", None)
        if model is None or not codec.availability().ok:
            return "unknown here"
        _, digest = model(codec.quality.validate(header.quality))
    except IcmError as exc:
        return f"not installed ({exc})"
    return "match installed" if digest == header.digest else "DIFFERENT from installed (decoding will fail)"


# Files `icm predict` picks up inside folders besides images: codec streams and decoded features.
_STREAM_SUFFIXES = {".icm", ".safetensors", ".jp2", ".j2k", ".avif", ".jxl", ".hevc", ".vvc"}


@app.command()
@user_errors
def predict(
    inputs: Annotated[
        list[Path],
        typer.Argument(
            help="Images, compressed files (.icm of any codec, .jpg, .hevc …), decoded features "
            "(.safetensors from `icm decompress`), or folders of them.",
            show_default=False,
        ),
    ],
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="Classifier for images and pixel streams: a timm / torchvision name "
            "(default tf_efficientnet_lite0). Features always go through the tail of the backbone named "
            "in the stream; another --model is refused.",
        ),
    ] = None,
    model_weights: Annotated[
        str, typer.Option(help="'default', 'none' (random init) or a local weights file.")
    ] = "default",
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="How many classes to show per file.")] = 5,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print one JSON object per file and line: file, kind, model, codec, "
            "top_k (index, label, probability).",
        ),
    ] = False,
) -> None:
    """ImageNet top-k classes with probabilities: images through the classifier (its own preprocessing),
    pixel streams decoded first, feature streams decoded and run through their backbone's tail."""
    from icmkit import api

    if top_k < 1:
        raise IcmError(f"--top-k must be at least 1, got {top_k}")
    files = _predict_inputs(inputs)
    weights = None if model_weights == "none" else model_weights
    many = len(files) > 1
    failures = 0
    with _progress(many) as progress:
        task = progress.add_task("predicting", total=len(files))
        for path in files:
            try:
                result = api.predict(path, model=model, k=top_k, weights=weights)
            except IcmError as exc:
                if not many:
                    raise
                failures += 1
                message = str(exc) if str(exc).startswith(str(path)) else f"{path}: {exc}"
                err_console.print(f"[red]error:[/] {escape(message)}", highlight=False)
            else:
                _print_prediction(path, result, as_json)
            progress.advance(task)
    if failures:
        raise typer.Exit(code=2)


def _predict_inputs(inputs: list[Path]) -> list[Path]:
    from icmkit.image import IMAGE_SUFFIXES

    suffixes = IMAGE_SUFFIXES | _STREAM_SUFFIXES
    files: list[Path] = []
    for item in inputs:
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
            if not found:
                raise InputImageError(f"{item}: folder holds no images, streams or features")
            files.extend(found)
        elif item.exists():
            files.append(item)
        else:
            raise InputImageError(f"{item}: no such file or folder")
    return files


def _print_prediction(path: Path, result, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"file": str(path), **result.as_dict()}), flush=True)
        return
    via = f", {result.codec}" if result.codec else ""
    console.print(f"{path}  ({result.kind}{via}; {result.model})", highlight=False, markup=False)
    for rank, top in enumerate(result.top_k, 1):
        console.print(f"  {rank:>2}. {top.probability:7.2%}  {top.label} ({top.index})", highlight=False, markup=False)


@app.command()
@user_errors
def codecs(as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False) -> None:
    """List every registered codec, its quality knob and grid, and whether it works on this machine."""
    from icmkit.codecs.registry import list_codecs

    rows = []
    for codec in list_codecs():
        state = codec.availability()
        rows.append(
            {
                "name": codec.name,
                "kind": codec.kind.value,
                "available": state.ok,
                "reason": state.reason,
                "knob": codec.quality.describe(),
                "grid": list(codec.quality.grid),
                "default": codec.quality.default,
                "extension": codec.extension,
                "description": codec.description.strip().splitlines()[0] if codec.description else "",
            }
        )
    if as_json:
        print(json.dumps(rows))
        return
    table = Table(title="icmkit codecs")
    for column in ("name", "kind", "available", "quality", "default grid", "ext"):
        table.add_column(column)
    for row in rows:
        available = "[green]yes[/]" if row["available"] else f"[red]no[/] — {escape(row['reason'])}"
        grid = " ".join(map(str, row["grid"]))
        table.add_row(row["name"], row["kind"], available, row["knob"], grid, row["extension"])
    console.print(table)


@app.command()
@user_errors
def zoo(as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False) -> None:
    """List the shipped learned-codec weights: family, quality, λ, β, steps, data, command and measurements."""
    from dataclasses import asdict

    from icmkit.zoo import families, family

    rows = [asdict(entry) for name in families() for entry in family(name)]
    if as_json:
        print(json.dumps(rows))
        return
    table = Table(title="icmkit model zoo")
    for column in ("family", "quality", "λ", "β", "steps", "measured", "data"):
        table.add_column(column)
    for row in rows:
        measured = ", ".join(f"{k} {v}" for k, v in row["metrics"].items())
        table.add_row(
            row["family"],
            str(row["quality"]),
            str(row["lmbda"]),
            str(row["beta"]),
            str(row["steps"]),
            escape(measured),
            escape(row["data"]),
        )
    console.print(table)
    for row in rows:
        console.print(f"{row['family']} q{row['quality']}: {row['command']}", highlight=False)


@app.command()
@user_errors
def demo(
    codec: CodecOption = DEFAULT_CODEC,
    quality: QualityOption = None,
) -> None:
    """Compress and decompress a bundled sample photo; print size, bpp, PSNR and timings."""
    from icmkit import api
    from icmkit.codecs.base import FeatureMaps
    from icmkit.codecs.registry import get_codec
    from icmkit.data import sample_path

    path = sample_path()
    image = api.read_image(path)
    chosen = get_codec(codec)
    chosen.require_available()
    quality = chosen.quality.validate(quality)
    start = time.perf_counter()
    data = chosen.encode(image, quality)
    encoded = time.perf_counter()
    decoded = chosen.decode(data)
    decoded_at = time.perf_counter()
    height, width = image.shape[:2]
    if isinstance(decoded, FeatureMaps):  # a feature codec: no pixels to compare
        name = next(iter(decoded.tensors))
        shape = "×".join(str(n) for n in tuple(decoded.tensors[name].shape)[1:])
        quality_text = f"features {shape} (stride {decoded.strides[name]})"
    else:
        quality_text = f"PSNR {api.psnr(image, decoded):.2f} dB"
    console.print(
        f"{path.name} ({width}×{height}) with {chosen.name} q{quality}: {len(data):,} bytes, "
        f"{api.bits_per_pixel(len(data), image.shape):.4f} bpp, {quality_text}, "
        f"encode {encoded - start:.3f} s, decode {decoded_at - encoded:.3f} s",
        highlight=False,
    )


@app.command()
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
) -> None:
    """Rate vs fidelity vs machine accuracy for codecs: results.csv, summary.csv, bd.csv, plots, report.html.
    An interrupted run resumes from what its --out folder already holds."""
    from icmkit.bench.api import BenchOptions, run_bench
    from icmkit.bench.summary import SUMMARY_COLUMNS

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
    )
    with _progress(True) as progress:

        def start(total: int):
            task_id = progress.add_task("coding and scoring", total=total)
            return lambda n: progress.advance(task_id, n)

        def resumed(rows: int, path: Path) -> None:
            err_console.print(f"resuming: kept {rows:,} rows of an earlier run in {path}", highlight=False)

        outcome = run_bench(options, progress=start, resumed=resumed)
    if outcome is None:  # a torchrun rank other than 0: rank 0 reports
        return
    table = Table(title=f"summary ({outcome.seconds:.0f} s)")
    columns = [c for c in SUMMARY_COLUMNS if any(r.get(c, "") != "" for r in outcome.summary)]
    for column in columns:
        table.add_column(column)
    formats = {
        "bpp": ".4f",
        "psnr": ".2f",
        "ms_ssim": ".4f",
        "top1": ".1f",
        "top5": ".1f",
        "agree": ".1f",
        "map": ".2f",
        "map50": ".2f",
        "enc_s": ".3f",
        "dec_s": ".3f",
    }
    for row in outcome.summary:
        table.add_row(*[format(row[c], formats[c]) if isinstance(row[c], float) else str(row[c]) for c in columns])
    console.print(table)
    for row in outcome.bd:
        if row["metric"] in ("psnr", "top1", "map"):
            console.print(_bd_line(row), highlight=False)
    console.print(f"report: {outcome.report}", highlight=False)


@app.command()
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

    Both may be the same summary.csv: icm bd s.csv s.csv --anchor-codec icm-mse --codec icm-mmd --metric top1
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


@app.command()
@user_errors
def train(
    overrides: Annotated[
        list[str] | None,
        typer.Argument(
            help="KEY=VALUE settings applied after --config, e.g. lmbda=0.0025 steps=50000 "
            "data=a/,b/ (lists: comma-separated or JSON).",
            metavar="KEY=VALUE",
            show_default=False,
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", help="YAML file of field: value (see configs/); fields it leaves out keep their defaults."
        ),
    ] = None,
    list_fields: Annotated[
        bool, typer.Option("--list-fields", help="Print every field (type, default, documentation) and exit.")
    ] = False,
) -> None:
    """Train a learned codec: random crops and flips of image folders, main + auxiliary Adam, checkpoints
    (safetensors + JSON), exact resume, log.jsonl and TensorBoard scalars in the run folder (field out).

    Rerunning the same command resumes from the run folder's checkpoint. For several GPUs or CPU processes
    start it with torchrun (DDP): torchrun --standalone --nproc_per_node 8 -m icmkit train --config FILE.yaml
    """
    from icmkit.cli._training import print_config_fields, training_reporter
    from icmkit.train.config import load_config
    from icmkit.train.distributed import launched_rank
    from icmkit.train.loop import Trainer

    if list_fields:
        print_config_fields()
        return
    train_config = load_config(config, overrides or [])
    # Under torchrun only rank 0 reports: other ranks must not draw (empty) bars on the same terminal.
    with training_reporter(train_config.steps, interactive=is_interactive() and launched_rank() == 0) as report:
        weights = Trainer(train_config, report=report).run()
    if weights is not None:  # None on torchrun ranks other than 0
        console.print(f"weights: {weights}", highlight=False)


def main() -> None:
    app()
