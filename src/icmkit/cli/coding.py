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
    SkipExistingOption,
    check_output,
    console,
    err_console,
    user_errors,
)
from icmkit.cli.progress import Progress
from icmkit.defaults import DEFAULT_CODEC
from icmkit.errors import BitstreamError, IcmError, InputImageError, OutputExistsError
from icmkit.fileio import atomic_write
from icmkit.limits import max_pixels


def _expand_inputs(
    inputs: list[Path], suffixes: set[str] | None = None, what: str = "images", left_out=None
) -> list[tuple[Path, Path]]:
    """Every file to code (a folder's files with one of ``suffixes``, default the image suffixes), with the path
    its output takes relative to the output folder (a folder's files keep their sub-folders; a file given by name
    keeps its name). A file reached twice (named twice, or named and inside a named folder) is taken once, by
    resolved path. ``left_out(folder, files)``: told of a folder's other files."""
    from icmkit.image import IMAGE_SUFFIXES

    suffixes = IMAGE_SUFFIXES if suffixes is None else suffixes
    files: list[tuple[Path, Path]] = []
    seen: set[Path] = set()

    def add(path: Path, relative: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            files.append((path, relative))

    for item in inputs:
        if item.is_dir():
            every = sorted(p for p in item.rglob("*") if p.is_file())
            found = [p for p in every if p.suffix.lower() in suffixes]
            if not found:
                raise InputImageError(f"{item}: folder holds no {what}")
            if left_out is not None and len(found) < len(every):
                left_out(item, [p for p in every if p.suffix.lower() not in suffixes])
            for path in found:
                add(path, path.relative_to(item))
        elif item.exists():
            add(item, Path(item.name))
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


def _refuse_collisions(sources: list[Path], targets: list[Path], verb: str = "compress") -> None:
    """Two inputs whose outputs are one file (``a.png`` and ``a.jpg`` → ``a.icm``; ``x/a.png`` and ``a.png``
    given by name → ``OUT/a.icm``): the second would silently replace the first."""
    first: dict[Path, Path] = {}
    for source, target in zip(sources, targets):
        key = Path(os.path.normcase(os.path.abspath(target)))
        if key in first:
            raise OutputExistsError(
                f"{first[key]} and {source} would both be written to {target}; {verb} them separately, or rename one"
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
    skip_existing: SkipExistingOption = False,
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
            "reads the stream. Default: the classifier geometry (see --geometry).",
        ),
    ] = None,
    geometry: Annotated[
        str | None,
        typer.Option(
            "--geometry",
            help="Feature codecs: 'classifier' (default) codes what the backbone classifier sees — its own "
            "resize and centre crop (224² for EfficientNet-Lite0) — so `icm predict` on the stream agrees with "
            "`icm predict` on the image; 'full' codes the whole image at its own size, and the tail then runs on "
            "the whole map (what dense tasks want; a classifier trained on centre crops reads it poorly).",
            metavar="classifier|full",
        ),
    ] = None,
) -> None:
    """Compress images.

    Learned codecs write .icm files; conventional codecs their native format
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
    chosen = _feature_geometry(chosen, geometry, detector_size)
    quality = chosen.quality.validate(quality)
    planned = _expand_inputs(inputs)
    files = [source for source, _ in planned]
    many = len(inputs) > 1 or any(p.is_dir() for p in inputs)  # a file named twice is coded once, into a folder
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
    with Progress(f"icm compress with {chosen.name}", len(files), unit="images", enabled=many) as progress:
        for source, target in zip(files, targets):
            try:
                image = api.read_image(source)
                data, note = _encode(chosen, image, quality, rate_target, best_effort)
                target.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(target, data, overwrite=force)  # without --force a concurrent writer loses, cleanly
            except IcmError as exc:
                if not many:
                    raise
                failures += 1
                err_console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
            else:
                pixels = image.shape[0] * image.shape[1]
                total_bytes += len(data)
                total_pixels += pixels
                console.print(
                    f"{source} → {target}  {len(data):,} bytes  {8 * len(data) / pixels:.4f} bpp{note}", highlight=False
                )
            progress.advance()
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
    inputs: Annotated[
        list[Path],
        typer.Argument(
            help="Compressed files (.icm or a conventional codec's file), or folders of them.", show_default=False
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Output file (one input): a PNG for images (default IN.decoded.png, so that "
            "decoding photo.icm never replaces photo.png); for feature streams a .safetensors of the "
            "decoded features (default IN.features.safetensors). Several inputs or a folder: the output folder "
            "(created if missing; sub-folders kept, the same names as beside the inputs).",
        ),
    ] = None,
    codec: Annotated[
        str | None, typer.Option("--codec", "-c", help="Codec to decode with (default: read from the file).")
    ] = None,
    restore: Annotated[
        str | None,
        typer.Option(
            "--restore",
            "-r",
            help="Restore the decoded images with a trained filter: BASE+FILTER (jpeg+mmd, hevc444+mmd), a filter's "
            "short name (mmd: the base is the file's format) or a filter weights file. Works on files written "
            "outside icmkit too (a camera's .jpg); the filter's quality condition is read from the stream.",
        ),
    ] = None,
    force: ForceOption = False,
    skip_existing: SkipExistingOption = False,
) -> None:
    """Decompress streams to lossless PNGs, or feature streams to their decoded features.

    Images go to IN.decoded.png by default; feature streams to IN.features.safetensors (tensor "features"
    (1, C, h, w) float32 + metadata stride, backbone, split, head_digest, image_size, codec, quality), which
    `icm predict` reads.

    A folder is decoded like `icm compress` codes one: recursively, its files with a codec's extension
    (.icm .jpg .webp .jp2 .avif .jxl .hevc .vvc), to -o OUTDIR (sub-folders kept) or beside each file. Its
    other files (the original images, say) are left out with a note; a file that is no stream icmkit decodes is
    an error line, the others are still decoded, and the exit status is then 2."""
    if force and skip_existing:
        raise IcmError("--force and --skip-existing contradict each other; pass one")
    if codec is not None and restore is not None:
        raise IcmError("--codec and --restore contradict each other: --codec BASE+FILTER names both")
    many = len(inputs) > 1 or any(p.is_dir() for p in inputs)
    if not many:
        _decompress_one(inputs[0], output, codec, force, restore)
        return
    from icmkit import api

    if codec is not None:  # an unknown or missing codec: one error, not one per file
        from icmkit.codecs.registry import get_codec

        get_codec(codec).require_available()
    left_out: list[tuple[Path, list[Path]]] = []  # noted once the plan holds (a refused plan: one error line)
    planned = _expand_inputs(inputs, _stream_suffixes(), "compressed streams", left_out=lambda *f: left_out.append(f))
    if output is not None and output.exists() and not output.is_dir():
        raise OutputExistsError(f"{output}: several inputs need an output folder, not a file")
    jobs: list[tuple[Path, Path | None, IcmError | None]] = []
    for source, relative in planned:
        try:  # a corrupt .icm header fails here: an error line in the loop, the other files are still decoded
            suffix = ".features.safetensors" if _is_feature_stream(api.read_stream_file(source), codec) else None
        except IcmError as exc:
            jobs.append((source, None, exc))
            continue
        base = source if output is None else output / relative
        jobs.append((source, base.with_suffix(suffix or DECODED_SUFFIX), None))
    planned_jobs = [(s, t) for s, t, problem in jobs if problem is None]
    _refuse_collisions([s for s, _ in planned_jobs], [t for _, t in planned_jobs], verb="decompress")
    sources = [s for s, _ in planned]
    for _, target in planned_jobs:
        hint = "use --force to overwrite, or --skip-existing to keep it"
        check_output(target, sources, force or (skip_existing and target.is_file()), create_parent=True, hint=hint)
    if skip_existing:
        kept = [job for job in jobs if job[1] is None or not job[1].is_file()]
        if len(kept) < len(jobs):
            err_console.print(
                f"skipping {len(jobs) - len(kept)} of {len(jobs)} inputs whose output exists", highlight=False
            )
        jobs = kept
    for folder, files in left_out:
        _note_left_out(folder, files)

    failures = 0
    with Progress("icm decompress", len(jobs), unit="files") as progress:
        for source, target, problem in jobs:
            try:
                if problem is not None:
                    raise problem
                target.parent.mkdir(parents=True, exist_ok=True)
                _decode_file(source, api.read_stream_file(source), target, codec, overwrite=force, restore=restore)
            except IcmError as exc:
                failures += 1
                message = str(exc) if str(exc).startswith(str(source)) else f"{source}: {exc}"
                err_console.print(f"[red]error:[/] {escape(message)}", highlight=False)
            progress.advance()
    if jobs:
        console.print(f"{len(jobs) - failures} of {len(jobs)} files decoded", highlight=False)
    if failures:
        raise typer.Exit(code=2)


def _decompress_one(input: Path, output: Path | None, codec: str | None, force: bool, restore: str | None) -> None:
    """One file: to ``output`` (a file, or a folder that exists), or beside it."""
    from icmkit import api

    data = api.read_stream_file(input)
    if _is_feature_stream(data, codec):
        target = output if output is not None else input.with_suffix(".features.safetensors")
        if output is not None and output.is_dir():
            target = output / Path(input.name).with_suffix(".features.safetensors")
        if target.suffix.lower() != ".safetensors":
            raise OutputExistsError(
                f"{input} is a feature stream: it decodes to backbone features, not an image; name the output "
                "*.safetensors (or leave out -o)"
            )
    else:
        target = output if output is not None else input.with_suffix(DECODED_SUFFIX)
        if output is not None and output.is_dir():
            target = output / Path(input.name).with_suffix(DECODED_SUFFIX)
        if target.suffix.lower() != ".png":
            raise OutputExistsError(f"{target}: decoded images are written as PNG; name the output *.png")
    check_output(target, [input], force)
    _decode_file(input, data, target, codec, overwrite=force, restore=restore)


def _decode_file(
    source: Path, data: bytes, target: Path, codec: str | None, overwrite: bool = True, restore: str | None = None
) -> None:
    """Decode ``data`` (the bytes of ``source``), write ``target`` and print what was written (``overwrite``
    False: created exclusively, so that a file another process wrote meanwhile is not replaced)."""
    from icmkit import api
    from icmkit.codecs.base import FeatureMaps
    from icmkit.codecs.sniff import not_a_stream_message, sniff_codec
    from icmkit.image import encode_png

    if codec is None and sniff_codec(data) is None:  # say what the file is (a PNG, a text file …)
        raise BitstreamError(not_a_stream_message(source, data))
    decoded = api.codec_for_stream(data, codec, how_to_name="--codec NAME", restore=restore).decode(data)
    if isinstance(decoded, FeatureMaps):
        from icmkit.feature_io import FEATURES, save_features

        save_features(decoded, target, overwrite=overwrite)
        height, width = decoded.image_size
        shape = "×".join(str(n) for n in tuple(decoded.tensors[FEATURES].shape)[1:])
        console.print(
            f"{source} → {target}  features {shape} (stride {decoded.strides[FEATURES]}) of a {width}×{height} image  "
            f"{8 * len(data) / (width * height):.4f} bpp",
            highlight=False,
        )
        return
    atomic_write(target, encode_png(decoded), overwrite=overwrite)
    height, width = decoded.shape[:2]
    console.print(f"{source} → {target}  {width}×{height}  {8 * len(data) / (width * height):.4f} bpp", highlight=False)


def _stream_suffixes() -> set[str]:
    """The extensions of every registered codec's files (.icm, .jpg, .webp, …): what a folder is decoded from."""
    from icmkit.codecs.registry import list_codecs

    suffixes = {codec.extension.lower() for codec in list_codecs()} | {".icm"}
    return suffixes | ({".jpeg"} if ".jpg" in suffixes else set())


def _note_left_out(folder: Path, left: list[Path]) -> None:
    example = ", ".join(str(p) for p in left[:2]) + (", …" if len(left) > 2 else "")
    what = "file that is not a compressed stream" if len(left) == 1 else "files that are not compressed streams"
    err_console.print(
        f"note: {folder}: left out {len(left)} {what} ({example})",
        highlight=False,
        markup=False,
    )


def _feature_geometry(chosen, geometry: str | None, detector_size: int | None):
    """The codec view that codes in the geometry asked for (--geometry, --detector-size: feature codecs only)."""
    from icmkit.feature_header import CLASSIFIER, FULL

    flag = "--detector-size" if detector_size is not None else "--geometry" if geometry is not None else None
    if flag is None:
        return chosen
    if not hasattr(chosen, "for_detection"):
        raise IcmError(f"{flag} is for feature codecs; {chosen.name} is a {chosen.kind.value} codec")
    if detector_size is not None:
        if geometry is not None:
            raise IcmError("--detector-size codes in the detector's geometry; leave out --geometry")
        return chosen.for_detection(detector_size, max(1333, detector_size))
    if geometry not in (CLASSIFIER, FULL):
        raise IcmError(f"--geometry must be {CLASSIFIER} or {FULL}, not {geometry!r}")
    return chosen.for_classifier() if geometry == CLASSIFIER else chosen.for_full_image()


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
    input: Annotated[
        Path, typer.Argument(help="An .icm file, or a standard codec's stream (a JPEG, an hevc444 stream).")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Show an .icm file's header: codec, quality, size, streams, rate, and whether the weights match.

    Feature streams also show the backbone, split, coded and decoded feature shape, stride and head digest. A
    standard codec's stream shows its format, size, rate and the quality a restoration filter reads from it (the
    JPEG quality whose tables the file's match; HEVC's slice QP as BPG's q), with the filters that restore it."""
    from icmkit import api
    from icmkit.codecs.base import CodecKind

    data = api.read_stream_file(input)
    if not bitstream.peek_is_icm(data):  # a standard codec's stream, or say what the file is (a PNG …)
        from icmkit.codecs.sniff import not_icm_message
        from icmkit.codecs.streams import standard_stream_info

        try:
            found = standard_stream_info(data)
        except BitstreamError as exc:
            raise BitstreamError(f"{input}: {exc}") from None
        if found is None:
            raise BitstreamError(not_icm_message(input, data))
        _print_fields({"file": str(input), **found}, as_json)
        return
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
    _print_fields(fields, as_json)


def _print_fields(fields: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(fields))
        return
    table = Table(show_header=False, box=None)
    for key, value in fields.items():
        table.add_row(key, _info_text(key, value))
    console.print(table)


def _info_text(key: str, value) -> str:
    """A header field as `icm info` shows it: bpp to 4 decimals, a quality as `compress` prints it (3.725, 42)."""
    if isinstance(value, float):
        return f"{value:.4f}" if key == "bpp" else format(value, "g")
    return escape(str(value))


def _feature_fields(header: bitstream.IcmHeader) -> dict:
    """A feature stream's own header fields (:mod:`icmkit.feature_header`): backbone, split, coded shape,
    geometry, head digest, and what the receiver gets (the decoded map's shape; a full stream's stride follows
    from the image's size, a resized stream's from its backbone, which ``icm info`` does not load)."""
    from icmkit.feature_header import parse_feature_header

    parsed = parse_feature_header(header)
    fields = parsed.fields()
    if parsed.geometry is None:
        rows, cols = parsed.coded
        padded_h, padded_w = header.height + header.pad_bottom, header.width + header.pad_right
        if padded_h % rows or padded_w % cols or padded_h // rows != padded_w // cols:
            raise BitstreamError(
                f"malformed feature stream header (features {parsed.feature_shape} do not tile a "
                f"{padded_w}×{padded_h} padded image)"
            )
        stride = padded_h // rows
        fields["decoded_shape"] = f"{parsed.channels}x{-(-header.height // stride)}x{-(-header.width // stride)}"
        fields["stride"] = stride
    return fields


def _header_quality(header: bitstream.IcmHeader):
    """The quality a header's quality byte stands for (continuous knobs store a step index); the byte itself
    when the codec is not registered here (a header never resolves to a weights file)."""
    from icmkit.codecs.registry import registered_codec

    try:
        return registered_codec(header.codec).quality.from_id(header.quality)
    except IcmError:
        return header.quality


def _weights_status(header: bitstream.IcmHeader) -> str:
    """Whether the installed weights are the header's, from the weights file's digest: no model is built."""
    from icmkit.codecs.registry import registered_codec
    from icmkit.weights import coding_digest

    try:
        codec = registered_codec(header.codec)
    except IcmError:
        if header.codec.endswith(".safetensors"):
            return "not registered here: a weights file's codec (a header never loads one; decode with --codec FILE)"
        return "not installed (no codec of that name is registered here)"
    try:
        if not codec.availability().ok or not hasattr(codec, "weights_file"):
            return "unknown here"
        path = codec.weights_file(codec.quality.validate(codec.quality.from_id(header.quality)))
        if path is None:
            return "unknown here"
        digest = coding_digest(path)
    except IcmError as exc:
        return f"not installed ({exc})"
    return "match installed" if digest == header.digest else "DIFFERENT from installed (decoding will fail)"


# Files `icm predict` picks up inside folders besides images: codec streams and decoded features.
