"""`icm predict`: ImageNet labels for images, pixel streams, feature streams and feature files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

# Light imports only: numpy, Pillow, torch and the codecs load inside the commands, after argument parsing,
# so that `icm --help` and every `icm COMMAND --help` answer at once (a test checks what they import).
from icmkit.cli._common import (
    console,
    err_console,
    user_errors,
)
from icmkit.cli.progress import Progress
from icmkit.errors import IcmError, InputImageError

# Files `icm predict` takes besides images: streams of every codec and decoded features.
_STREAM_SUFFIXES = {".icm", ".safetensors", ".jp2", ".j2k", ".avif", ".jxl", ".hevc", ".vvc"}


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
            "in the stream; another classifier is refused. A COCO detector (fasterrcnn_resnet50_fpn, "
            "maskrcnn_resnet50_fpn, retinanet_resnet50_fpn, …) prints detections instead: of images, pixel "
            "streams, and feature streams coded with --detector-size by a ResNet-50 layer1 codec.",
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
            "top_k (index, label, probability) — or detections (label, name, score, box) for a detector.",
        ),
    ] = False,
    min_score: Annotated[
        float, typer.Option("--min-score", help="Detectors: show detections scoring at least this.")
    ] = 0.5,
    detector_size: Annotated[
        int,
        typer.Option("--detector-size", help="Detectors on images and pixel streams: the shorter side they resize to."),
    ] = 800,
    codec: Annotated[
        str | None,
        typer.Option(
            "--codec",
            "-c",
            help="Decode streams with this codec (a name, or a weights file: a stream's header never picks a file).",
        ),
    ] = None,
) -> None:
    """ImageNet top-k classes of images, compressed streams and decoded features (or a detector's detections).

    Top-k classes with probabilities: images through the classifier (its own preprocessing),
    pixel streams decoded first, feature streams decoded and run through their backbone's tail. With a COCO
    detector as --model: its detections (the --top-k best scoring at least --min-score), from feature streams
    without pixels."""
    from icmkit import api

    if top_k < 1:
        raise IcmError(f"--top-k must be at least 1, got {top_k}")
    from icmkit.pretrained.detectors import DETECTORS

    files = _predict_inputs(inputs)
    weights = None if model_weights == "none" else model_weights
    detector = model in DETECTORS
    many = len(files) > 1
    failures = 0
    with Progress("icm predict", len(files), unit="files", enabled=many) as progress:
        for path in files:
            try:
                if detector:
                    size = (detector_size, max(1333, detector_size))
                    result = api.detect(
                        path, model=model, weights=weights, codec=codec, min_size=size[0], max_size=size[1]
                    )
                else:
                    result = api.predict(path, model=model, k=top_k, weights=weights, codec=codec)
            except IcmError as exc:
                if not many:
                    raise
                failures += 1
                message = str(exc) if str(exc).startswith(str(path)) else f"{path}: {exc}"
                err_console.print(f"[red]error:[/] {escape(message)}", highlight=False)
            else:
                if detector:
                    _print_detections(path, result, as_json, min_score, top_k)
                else:
                    _print_prediction(path, result, as_json)
            progress.advance()
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


def _print_detections(path: Path, result, as_json: bool, min_score: float, limit: int) -> None:
    if as_json:
        print(json.dumps({"file": str(path), **result.as_dict(min_score)}), flush=True)
        return
    rows = result.as_dict(min_score)["detections"]
    via = f", {result.codec}" if result.codec else ""
    console.print(
        f"{path}  ({result.kind}{via}; {result.model}): {len(rows)} detections scoring ≥ {min_score:g}",
        highlight=False,
        markup=False,
    )
    for row in rows[: max(limit, 1)]:
        box = ", ".join(f"{v:.1f}" for v in row["box"])
        console.print(f"  {row['score']:6.1%}  {row['name']} ({row['label']})  [{box}]", highlight=False, markup=False)
