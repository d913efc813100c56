"""`icm probe`: the linear-probe evaluation (MoCo protocol) on the frozen features a codec delivers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

# Light imports only: numpy, Pillow, torch and the codecs load inside the commands, after argument parsing,
# so that `icm --help` and every `icm COMMAND --help` answer at once (a test checks what they import).
from icmkit.cli._common import (
    console,
    err_console,
    user_errors,
)
from icmkit.cli.progress import Progress
from icmkit.defaults import DEFAULT_CLASSIFIER
from icmkit.errors import IcmError, QualityError

# The defaults of icmkit.tasks.probe (a test checks they agree), written out here: that module loads torch.
DEFAULT_EPOCHS = 100
DEFAULT_LR = 0.1
DEFAULT_WEIGHT_DECAY = 0.0
DEFAULT_BATCH_SIZE = 256
UNCOMPRESSED = "none"
RESULT_COLUMNS = (
    "codec",
    "quality",
    "bpp",
    "train_bpp",
    "top1",
    "top5",
    "train_images",
    "eval_images",
    "classes",
    "unseen_classes",
    "unseen_eval_images",
    "model",
    "feature_dim",
)
_POOL_BATCH = 32  # decoded items pooled together: one forward pass of the frozen network


@user_errors
def probe(
    train_dir: Annotated[
        Path,
        typer.Option(
            "--train",
            help="Labelled training images: a folder with labels.csv (file,class_index) or ImageNet wnid sub-folders.",
            show_default=False,
        ),
    ],
    eval_dir: Annotated[
        Path,
        typer.Option("--eval", help="Labelled evaluation images, same layouts as --train.", show_default=False),
    ],
    codec: Annotated[
        str,
        typer.Option(
            "--codec",
            "-c",
            help="NAME (its default quality grid), NAME:q1,q2,… (those qualities), or 'none' (uncompressed "
            "crops). A feature codec's decoded features go through its backbone's tail (see `icm codecs`).",
        ),
    ] = UNCOMPRESSED,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help=f"Frozen classifier for images and pixel codecs: a timm / torchvision name (default "
            f"{DEFAULT_CLASSIFIER}). A feature codec always uses the backbone its streams name; another "
            "--model is refused.",
            show_default=False,
        ),
    ] = None,
    model_weights: Annotated[
        str, typer.Option(help="The classifier's weights: 'default', 'none' (random init) or a local weights file.")
    ] = "default",
    epochs: Annotated[int, typer.Option(help="Passes over the training features.")] = DEFAULT_EPOCHS,
    lr: Annotated[
        float,
        typer.Option(
            help="Initial SGD learning rate (momentum 0.9, cosine decay to 0). Features are standardised, so it is "
            "far below MoCo's 30 for raw features."
        ),
    ] = DEFAULT_LR,
    weight_decay: Annotated[float, typer.Option(help="SGD weight decay of the linear layer.")] = DEFAULT_WEIGHT_DECAY,
    batch_size: Annotated[int, typer.Option(help="Training features per SGD step.")] = DEFAULT_BATCH_SIZE,
    crop: Annotated[
        int,
        typer.Option(
            help="Every image is resized (shorter side) and centre-cropped to crop×crop before coding, as in "
            "`icm bench`; bpp is counted over those pixels."
        ),
    ] = 256,
    limit: Annotated[
        int | None,
        typer.Option(help="Use only the first N images of each folder.", show_default=False),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seeds the linear layer's initialisation and batch order.")] = 0,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Folder to write probe.csv and probe.json into (created if missing; earlier files are replaced).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Linear probe (MoCo protocol) on the frozen features a codec delivers: top-1 / top-5 and bpp per quality.

    Train a linear layer on the pooled
    penultimate features of the --train images as the codec delivers them, report its top-1 / top-5 on
    --eval, per codec quality, with bpp (mean over the --eval crops).

    Each image is resized and centre-cropped (--crop), coded and decoded once per quality and pooled once (no
    augmentation); the features stay in memory while the linear layer trains on them.
    """
    _check_settings(train_dir, eval_dir, epochs, lr, weight_decay, batch_size, crop, limit, seed, out)
    from icmkit.bench.datasets import open_dataset
    from icmkit.codecs.base import CodecKind
    from icmkit.pretrained.classifiers import load_classifier
    from icmkit.tasks.evaluators import probe_feature_codec
    from icmkit.tasks.probe import DEFAULT_MOMENTUM, fit_and_evaluate

    chosen, qualities = _codec_plan(codec)
    # A feature codec codes a small synthetic image first: its decoded meta names the backbone to load.
    probed = probe_feature_codec(chosen, qualities[0]) if chosen and chosen.kind == CodecKind.FEATURE else None
    train_samples = open_dataset(train_dir, "classify").limit(limit).samples
    eval_samples = open_dataset(eval_dir, "classify").limit(limit).samples
    classifier = load_classifier(_model_for(chosen, probed, model), None if model_weights == "none" else model_weights)
    if probed is not None:
        _check_feature_head(chosen, probed, classifier)
    if out is not None:  # created once every input is known to be usable, before the long part
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise IcmError(f"--out {out}: cannot create the folder ({exc.strerror or exc})") from None

    training = {"epochs": epochs, "lr": lr, "weight_decay": weight_decay, "batch_size": batch_size, "seed": seed}
    rows, warnings_seen = [], []
    total = len(qualities) * (len(train_samples) + len(eval_samples))
    with Progress("icm probe: coding and pooling", total, unit="images") as progress:
        for quality in qualities:
            train_x, train_bpp = _pooled_set(train_samples, chosen, quality, classifier, crop, progress.advance)
            eval_x, eval_bpp = _pooled_set(eval_samples, chosen, quality, classifier, crop, progress.advance)
            result = fit_and_evaluate(
                train_x, [s.label for s in train_samples], eval_x, [s.label for s in eval_samples], **training
            )
            for message in result.warnings:
                if message not in warnings_seen:
                    warnings_seen.append(message)
                    err_console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False)
            rows.append(
                {
                    "codec": chosen.name if chosen is not None else UNCOMPRESSED,
                    "quality": quality,
                    "bpp": eval_bpp,
                    "train_bpp": train_bpp,
                    "top1": result.top1,
                    "top5": result.top5,
                    "train_images": result.train_images,
                    "eval_images": result.eval_images,
                    "classes": len(result.classes),
                    "unseen_classes": len(result.unseen_classes),
                    "unseen_eval_images": result.unseen_images,
                    "model": classifier.name,
                    "feature_dim": int(train_x.shape[1]),
                }
            )
    _print_table(rows)
    if out is not None:
        settings = {
            "train": str(train_dir),
            "eval": str(eval_dir),
            "codec": codec,
            "model": classifier.name,
            "model_weights": model_weights,
            "crop": crop,
            "limit": limit,
            "momentum": DEFAULT_MOMENTUM,
            **training,
        }
        _write_outputs(out, rows, settings, warnings_seen)
        console.print(f"results: {out / 'probe.csv'}, {out / 'probe.json'}", highlight=False)


def _check_settings(train_dir, eval_dir, epochs, lr, weight_decay, batch_size, crop, limit, seed, out) -> None:
    """Every option a user can get wrong, checked before anything heavy loads (one line each)."""
    import math

    for folder, option in ((train_dir, "--train"), (eval_dir, "--eval")):
        if not folder.is_dir():
            raise IcmError(f"{option} {folder}: no such folder")
    for value, option, least in ((epochs, "--epochs", 1), (batch_size, "--batch-size", 1), (crop, "--crop", 16)):
        if value < least:
            raise IcmError(f"{option} must be at least {least}, got {value}")
    if limit is not None and limit < 1:
        raise IcmError(f"--limit must be at least 1, got {limit}")
    if seed < 0:
        raise IcmError(f"--seed must be 0 or more, got {seed}")
    if not (math.isfinite(lr) and lr > 0):
        raise IcmError(f"--lr must be a positive number, got {lr}")
    if not (math.isfinite(weight_decay) and weight_decay >= 0):
        raise IcmError(f"--weight-decay must be 0 or more, got {weight_decay}")
    if out is not None and out.exists() and not out.is_dir():
        raise IcmError(f"--out {out}: exists and is not a folder")


def _codec_plan(spec: str):
    """(codec or None for uncompressed crops, its qualities) from ``NAME``, ``NAME:q1,q2`` or ``none``."""
    from icmkit.bench.protocols import coding_view
    from icmkit.codecs.registry import get_codec

    if spec.strip().lower() == UNCOMPRESSED:
        return None, (None,)
    name, sep, listed = spec.partition(":")
    chosen = coding_view(get_codec(name.strip()))  # the crops as they are, as in `icm bench`
    chosen.require_available()
    if not sep:
        return chosen, tuple(chosen.quality.grid)
    values = [value.strip() for value in listed.split(",")]
    if not all(values):
        raise QualityError(f"--codec {spec!r}: empty quality in the list (write NAME:q1,q2,…)")
    try:
        qualities = tuple(dict.fromkeys(chosen.quality.validate(value) for value in values))
    except QualityError as exc:
        raise QualityError(f"--codec {spec!r}: {exc}") from None
    return chosen, qualities


def _model_for(chosen, probed, model: str | None) -> str:
    """The classifier to load: --model, or for a feature codec the backbone its streams name (nothing else)."""
    if probed is None:
        return model or DEFAULT_CLASSIFIER
    backbone, split = str(probed.meta["backbone"]), str(probed.meta["split"])
    if model is not None and model != backbone:
        raise IcmError(
            f"codec {chosen.name!r} delivers {backbone} features (after {split}): only {backbone}'s tail can pool "
            f"them, not {model} (leave out --model)"
        )
    return backbone


def _check_feature_head(chosen, probed, classifier) -> None:
    """Pool the synthetic image's decoded features once: refuses a head other than the loaded classifier's
    (e.g. --model-weights none) before any dataset image is coded."""
    from icmkit.tasks.probe import pooled_features

    try:
        pooled_features([probed], classifier)
    except IcmError as exc:
        raise IcmError(f"codec {chosen.name!r}: {exc}") from None


def _pooled_set(samples, chosen, quality, classifier, crop: int, advance):
    """Pooled features ``(N, D)`` of every sample as ``chosen`` delivers it at ``quality`` (None: the crop
    itself), and the mean bpp over the crops' pixels (None without a codec)."""
    import torch

    from icmkit.api import read_image
    from icmkit.bench.protocols import resize_center_crop
    from icmkit.tasks.probe import pooled_features

    rows, pending, bits_per_pixel = [], [], []
    for position, sample in enumerate(samples):
        image = resize_center_crop(read_image(sample.path), crop)
        if chosen is None:
            pending.append(image)
        else:
            data = chosen.encode(image, quality)
            bits_per_pixel.append(8.0 * len(data) / (image.shape[0] * image.shape[1]))
            pending.append(chosen.decode(data))
        if len(pending) == _POOL_BATCH or position == len(samples) - 1:
            rows.append(pooled_features(pending, classifier, batch_size=_POOL_BATCH))
            pending = []
        advance()
    mean_bpp = sum(bits_per_pixel) / len(bits_per_pixel) if bits_per_pixel else None
    return torch.cat(rows), mean_bpp


def _print_table(rows: list[dict]) -> None:
    table = Table(title="linear probe")
    for column in ("codec", "quality", "bpp", "top1", "top5", "train", "eval"):
        table.add_column(column, justify="left" if column == "codec" else "right")
    for row in rows:
        table.add_row(
            row["codec"],
            "—" if row["quality"] is None else str(row["quality"]),
            "—" if row["bpp"] is None else f"{row['bpp']:.4f}",
            f"{row['top1']:.1f}",
            f"{row['top5']:.1f}",
            str(row["train_images"]),
            str(row["eval_images"]),
        )
    console.print(table)


def _write_outputs(out: Path, rows: list[dict], settings: dict, warnings: list[str]) -> None:
    import csv
    import io

    from icmkit.fileio import atomic_write

    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=RESULT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: "" if value is None else value for key, value in row.items()})
    atomic_write(out / "probe.csv", text.getvalue().encode())
    document = {"settings": settings, "results": rows, "warnings": warnings}
    atomic_write(out / "probe.json", (json.dumps(document, indent=2) + "\n").encode())
