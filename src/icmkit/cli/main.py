"""``icm`` — the command line. A thin layer over :mod:`icmkit.api`; every command has ``--help``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

# Light imports only: numpy, Pillow, torch and the codecs load inside the commands, after argument parsing,
# so that `icm --help` and every `icm COMMAND --help` answer at once (a test checks what they import).
from icmkit.cli._common import (
    CodecOption,
    IcmCommand,
    IcmGroup,
    QualityOption,
    console,
    user_errors,
)
from icmkit.cli.benchmark import bd, bench
from icmkit.cli.cache import cache_app
from icmkit.cli.coding import compress, decompress, info
from icmkit.cli.predict import predict
from icmkit.cli.probe import probe
from icmkit.defaults import DEFAULT_CODEC

app = typer.Typer(
    name="icm",
    help="icmkit — image coding for machines: compress, decompress, inspect and compare codecs; train learned ones.",
    cls=IcmGroup,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        from icmkit import __version__

        print(f"icm {__version__}")
        raise typer.Exit()


@app.callback()
def _icm(
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", callback=_print_version, is_eager=True, expose_value=True
        ),
    ] = False,
) -> None:
    """icmkit — image coding for machines: compress, decompress, inspect and compare codecs; train learned ones."""


# Commands in the order `icm --help` lists them; each lives in the module of its job.
for command in (compress, decompress, info, predict, probe):
    app.command(cls=IcmCommand)(command)


@app.command(cls=IcmCommand)
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


@app.command(cls=IcmCommand)
@user_errors
def zoo(as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False) -> None:
    """List the shipped learned-codec weights: family, quality, λ, β, steps, data, command and measurements."""
    from dataclasses import asdict

    from icmkit.zoo import families, family

    rows = [asdict(entry) for name in families() for entry in family(name)]
    if as_json:
        print(json.dumps(rows))
        return
    # What one family's rows share (its training data, how it was measured) is shown once, under the table.
    shared: dict[str, dict[str, str]] = {}
    for name in dict.fromkeys(row["family"] for row in rows):
        members = [row for row in rows if row["family"] == name]
        texts = {}
        for key in ("data", "command"):
            if all(r[key] == members[0][key] for r in members):
                texts[key] = members[0][key]
        for key, value in members[0]["metrics"].items():
            if isinstance(value, str) and all(r["metrics"].get(key) == value for r in members):
                texts[key] = value
        shared[name] = texts
    table = Table(title="icmkit model zoo")
    for column in ("family", "quality", "λ", "β", "steps", "measured"):
        table.add_column(column)
    if any("data" not in texts for texts in shared.values()):
        table.add_column("data")
    for row in rows:
        texts = shared[row["family"]]
        measured = ", ".join(f"{k} {v}" for k, v in row["metrics"].items() if k not in texts)
        cells = [row["family"], str(row["quality"]), str(row["lmbda"]), str(row["beta"]), str(row["steps"])]
        cells.append(escape(measured))
        if len(table.columns) > len(cells):
            cells.append("" if "data" in texts else escape(row["data"]))
        table.add_row(*cells)
    console.print(table)
    for name, texts in shared.items():
        console.print(name, highlight=False, markup=False)
        for key, value in texts.items():
            console.print(f"  {key}: {value}", highlight=False, markup=False)
        for row in rows:
            if row["family"] == name and "command" not in texts:
                console.print(f"  command q{row['quality']}: {row['command']}", highlight=False, markup=False)


@app.command(cls=IcmCommand)
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


app.command(cls=IcmCommand)(bench)
app.command(cls=IcmCommand)(bd)
app.add_typer(cache_app)  # icm cache features | …: work done once for many training steps


@app.command(cls=IcmCommand)
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
    """Train a learned codec, a restoration filter, or pre-train a backbone (MoCo v2).

    Random crops and flips of image folders, main + auxiliary Adam, checkpoints
    (safetensors + JSON), exact resume, log.jsonl and TensorBoard scalars in the run folder (field out).
    `architecture: moco-v2` pre-trains a backbone instead (MoCo v2 with semantic-guided crops, DICM's stage 1);
    `architecture: restoration-cnn` trains a filter for a standard codec's receiver on a decoded-crop cache
    (`icm cache decoded`; configs/restore-*.yaml).

    Rerunning the same command resumes from the run folder's checkpoint. For several GPUs or CPU processes
    start it with torchrun (DDP):

    torchrun --standalone --nproc_per_node 8 -m icmkit train --config FILE.yaml
    """
    from icmkit.cli._training import print_config_fields, training_reporter
    from icmkit.train.config import load_config
    from icmkit.train.distributed import launched_rank
    from icmkit.train.trainers import make_trainer

    if list_fields:
        print_config_fields()
        return
    train_config = load_config(config, overrides or [])
    # Under torchrun only rank 0 reports: other ranks must not draw (empty) bars on the same terminal.
    with training_reporter(train_config.schedule.steps, enabled=launched_rank() == 0) as report:
        weights = make_trainer(train_config, report=report).run()
    if weights is not None:  # None on torchrun ranks other than 0
        console.print(f"weights: {weights}", highlight=False)


def main() -> None:
    app()
