"""`icm compress`, `icm decompress`, `icm info`: files in, streams out, and back."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

# Light imports only: numpy, Pillow, torch and the codecs load inside the commands, after argument parsing,
# so that `icm --help` and every `icm COMMAND --help` answer at once (a test checks what they import).
from icmkit import bitstream
from icmkit.cli._common import (
    DECODED_SUFFIX,
    CodecOption,
    ForceOption,
    QualityOption,
    check_output,
    console,
    err_console,
    progress_bar,
    user_errors,
)
from icmkit.defaults import DEFAULT_CODEC
from icmkit.digest import DIGEST_BYTES
from icmkit.errors import BitstreamError, IcmError, InputImageError, OutputExistsError
from icmkit.fileio import atomic_write
from icmkit.limits import max_pixels


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


def _rate_target(target_bytes, target_bpp, target_psnr, keep_prediction, keep, min_confidence, model, quality):
    """The one rate-control target the options name (None: code at --quality); conflicts are user errors."""
    from icmkit.ratecontrol import Target

    given = {
        "--target-bytes": target_bytes is not None,
        "--target-bpp": target_bpp is not None,
        "--target-psnr": target_psnr is not None,
        "--keep-prediction": keep_prediction,
    }
    named = [option for option, present in given.items() if present]
    if len(named) > 1:
        raise IcmError(f"{' and '.join(named)} conflict: give one target")
    keep_options = [
        o for o, v in (("--keep", keep != "top1"), ("--min-confidence", min_confidence), ("--model", model)) if v
    ]
    if keep_options and not keep_prediction:
        raise IcmError(f"{', '.join(keep_options)} only apply with --keep-prediction")
    if not named:
        return None
    if quality is not None:
        raise IcmError(f"--quality and {named[0]} conflict: a target chooses the quality")
    if keep_prediction:
        return Target("keep", keep=keep, min_confidence=min_confidence, model=model)
    if target_bytes is not None:
        return Target("bytes", float(target_bytes))
    return Target("bpp", target_bpp) if target_bpp is not None else Target("psnr", target_psnr)


def _encode(codec, image, quality, target, best_effort: bool) -> tuple[bytes, str]:
    """The stream of one image (at ``quality``, or searched for ``target``) and what to print beside it."""
    if target is None:
        return codec.encode(image, quality), ""
    from icmkit.ratecontrol import compress_to_target

    result = compress_to_target(codec, image, target, best_effort=best_effort)
    if not result.met:
        err_console.print(
            f"[yellow]warning:[/] target {target.describe()} is unreachable with {codec.name}; kept the closest "
            f"stream (quality {result.quality}: {result.achieved})",
            highlight=False,
        )
    note = f"  quality {result.quality} ({target.describe()}: {result.achieved}; {result.encodes} encodes)"
    return result.data, note


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
    target_bytes: Annotated[
        int | None, typer.Option("--target-bytes", help="Rate control: the best stream of at most N bytes.")
    ] = None,
    target_bpp: Annotated[
        float | None, typer.Option("--target-bpp", help="Rate control: the best stream of at most X bits per pixel.")
    ] = None,
    target_psnr: Annotated[
        float | None, typer.Option("--target-psnr", help="Rate control: the smallest stream of at least DB dB PSNR.")
    ] = None,
    keep_prediction: Annotated[
        bool,
        typer.Option(
            "--keep-prediction",
            help="Rate control: the smallest stream from which the classifier (--model; feature codecs: their "
            "backbone's tail) still makes the original's decision (--keep, --min-confidence).",
        ),
    ] = False,
    keep: Annotated[
        str,
        typer.Option("--keep", help="With --keep-prediction: top1 (same top-1) or top5 (original top-1 in the top 5)."),
    ] = "top1",
    min_confidence: Annotated[
        float,
        typer.Option(
            "--min-confidence", help="With --keep-prediction: the kept class's decoded probability at least P."
        ),
    ] = 0.0,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", help="With --keep-prediction, pixel codecs: the classifier (default tf_efficientnet_lite0)."
        ),
    ] = None,
    best_effort: Annotated[
        bool,
        typer.Option(
            "--best-effort", help="An unreachable target keeps the closest stream (with a warning) instead of failing."
        ),
    ] = False,
    detector_size: Annotated[
        int | None,
        typer.Option(
            "--detector-size",
            help="Feature codecs: code for a COCO detector — resize as torchvision's detectors do (shorter side N, "
            "longer at most max(1333, N)) before the head; `icm predict --model fasterrcnn_resnet50_fpn` then "
            "reads the stream. Default: the classification geometry (the image as it is).",
        ),
    ] = None,
) -> None:
    """Compress images. Learned codecs write .icm files; conventional codecs their native format
    (default output: the input's name with that extension, beside it). With a target (--target-bytes,
    --target-bpp, --target-psnr or --keep-prediction) the quality is searched per image; the chosen quality and
    what it achieved are printed and, in .icm files of icmkit's codecs, recorded in the header (icm info)."""
    if force and skip_existing:
        raise IcmError("--force and --skip-existing contradict each other; pass one")
    from icmkit import api
    from icmkit.codecs.registry import get_codec

    rate_target = _rate_target(
        target_bytes, target_bpp, target_psnr, keep_prediction, keep, min_confidence, model, quality
    )
    chosen = get_codec(codec)
    chosen.require_available()
    if detector_size is not None:
        if not hasattr(chosen, "for_detection"):
            raise IcmError(f"--detector-size is for feature codecs; {chosen.name} is a {chosen.kind.value} codec")
        chosen = chosen.for_detection(detector_size, max(1333, detector_size))
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
    with progress_bar(many) as progress:
        task = progress.add_task(f"compressing with {chosen.name}", total=len(files))
        for source, target in zip(files, targets):
            try:
                image = api.read_image(source)
                data, note = _encode(chosen, image, quality, rate_target, best_effort)
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
                    f"{source} → {target}  {len(data):,} bytes  {8 * len(data) / pixels:.4f} bpp{note}", highlight=False
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
        "quality": _header_quality(header),
        "weights_digest": header.digest.hex(),
        "width": header.width,
        "height": header.height,
        "channels": header.channels,
        "padding": [header.pad_bottom, header.pad_right],
    }
    if header.kind == CodecKind.FEATURE.value:
        fields.update(_feature_fields(header))
    record = bitstream.read_record(header)
    if record is not None:
        fields["rate_control"] = record
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
    """A feature stream's ``extra`` header (b = backbone, s = split, h = head digest, f = coded C×h×w, and
    g = the detector's resize of a detection stream)."""
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
    if "g" in extra:  # a detection stream: coded after the detector's resize (icmkit.geometry)
        from icmkit.geometry import format_size, parse_size

        resized = parse_size(extra["g"].decode("ascii", "replace"))
        if resized is None:
            raise BitstreamError("malformed feature stream header (bad detection size)")
        geometry = {"geometry": "detection", "resized": format_size(resized)}
        return {
            "backbone": backbone,
            "split": split,
            "feature_shape": shape,
            **geometry,
            "head_digest": extra["h"].hex(),
        }
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


def _header_quality(header: bitstream.IcmHeader):
    """The quality a header's quality byte stands for (continuous knobs store a step index); the byte itself
    when the codec is not installed here."""
    from icmkit.codecs.registry import get_codec

    try:
        return get_codec(header.codec).quality.from_id(header.quality)
    except IcmError:
        return header.quality


def _weights_status(header: bitstream.IcmHeader) -> str:
    from icmkit.codecs.registry import get_codec

    try:
        codec = get_codec(header.codec)
        model = getattr(codec, "model", None)
        if model is None or not codec.availability().ok:
            return "unknown here"
        _, digest = model(codec.quality.validate(codec.quality.from_id(header.quality)))
    except IcmError as exc:
        return f"not installed ({exc})"
    return "match installed" if digest == header.digest else "DIFFERENT from installed (decoding will fail)"


# Files `icm predict` picks up inside folders besides images: codec streams and decoded features.
