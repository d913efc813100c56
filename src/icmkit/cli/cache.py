"""`icm cache …`: work done once for many training steps. `icm cache decoded` builds the cache of decoded crops a
restoration filter trains on (issue 21); `icm cache features` the frozen backbone head's features a feature codec
trains on (issue 22, icmkit.train.feature_cache).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

# Light imports only: numpy, Pillow, torch and the codecs load inside the command, after argument parsing.
from icmkit.cli._common import IcmCommand, IcmGroup, console, user_errors
from icmkit.cli.progress import Progress

cache_app = typer.Typer(
    name="cache",
    help="Build caches of training data that are expensive to make (decoded crops of a standard codec, a frozen "
    "backbone head's features).",
    cls=IcmGroup,
    no_args_is_help=True,
    add_completion=False,
)


@cache_app.command(cls=IcmCommand)
@user_errors
def decoded(
    codec: Annotated[
        str,
        typer.Option("--codec", "-c", help="Pixel codec that codes the crops (hevc444, jpeg, …).", show_default=False),
    ],
    data: Annotated[
        list[Path],
        typer.Option(
            "--data", help="Training image folder (searched recursively); repeat for several.", show_default=False
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="Cache folder (new, or one this command built: a rerun resumes).", show_default=False
        ),
    ],
    crops: Annotated[int, typer.Option("--crops", min=1, help="Random crops per image.")] = 4,
    qualities: Annotated[
        int, typer.Option("--qualities", min=1, help="Qualities per crop, one from each equal slice of the grid.")
    ] = 3,
    crop: Annotated[int, typer.Option("--crop", min=1, help="Side of the square crops, in pixels.")] = 256,
    resize: Annotated[
        int, typer.Option("--resize", min=0, help="Scale each image's shorter side to this first (0: no resize).")
    ] = 0,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the crops and qualities.")] = 0,
    workers: Annotated[int, typer.Option("--workers", "-j", min=1, help="Worker processes (one thread each).")] = 1,
) -> None:
    """Code K random crops of every training image at Q qualities of the codec's training grid; store each
    original crop, its decoded versions, qualities and byte counts.

    One safetensors shard per image under OUT/shards, written whole or not at all, and OUT/manifest.json (codec,
    library versions, grid, settings, folders). A rerun with the same settings skips the shards that exist;
    other settings are refused. The grid: hevc444 q 12…50, jpeg quality 5…95, every integer (see
    icmkit.train.decoded_cache).
    """
    from icmkit.train.decoded_cache import CacheSpec, build, cache_size_bytes

    spec = CacheSpec(codec, tuple(map(str, data)), crop, crops, qualities, seed, resize)
    progress = Progress(f"icm cache decoded {codec}", 0, unit="items")

    def start(total: int, done: int) -> None:
        progress.total = total
        progress.restart(done)

    with progress:
        result = build(spec, out, workers=workers, on_start=start, on_shard=progress.advance)
    size = cache_size_bytes(out)
    console.print(
        f"{out}: {result.items:,} items in {result.built + result.skipped:,} shards ({result.built:,} built now, "
        f"{result.skipped:,} already there), {size / 1e9:.2f} GB",
        highlight=False,
    )


@cache_app.command(cls=IcmCommand)
@user_errors
def features(
    overrides: Annotated[
        list[str] | None,
        typer.Argument(
            help="KEY=VALUE training settings applied after --config, e.g. data=a/,b/ (as `icm train` takes them).",
            metavar="KEY=VALUE",
            show_default=False,
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="Training config (YAML): its backbone, split, crop, resize and data."),
    ] = None,
    out: Annotated[
        Path,
        typer.Option("--out", help="Cache folder: new, or an unfinished cache of these settings.", show_default=False),
    ] = ...,
    views: Annotated[int, typer.Option("--views", help="Random crop + flip views per image (V epochs).", min=1)] = 16,
    workers: Annotated[int, typer.Option("--workers", help="Processes, one torch thread each.", min=1)] = 1,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the views (each image's own stream).", min=0)] = 0,
) -> None:
    """Cache the frozen backbone head's features of a feature codec's training images.

    Each image gets V views (random crop position and horizontal flip, as training draws them, seeded per image),
    each stored as the head's output in float16, in shards with a manifest. Rerunning the same command resumes;
    other settings on the same folder are refused. Train from it with feature_cache=DIR.
    """
    from icmkit.train.config import load_config
    from icmkit.train.feature_cache import build_feature_cache, cache_bytes

    train_config = load_config(config, overrides or [])
    with Progress("icm cache features", 0, unit="images") as progress:
        started = []

        def report(done: int, total: int) -> None:
            progress.total = total
            if not started:  # images of an earlier, interrupted build do not count in the rate
                started.append(done)
                progress.restart(done)
            progress.update(done)

        manifest = build_feature_cache(train_config, out, views=views, seed=seed, workers=workers, progress=report)
    size = cache_bytes(manifest) / 1e6
    console.print(
        f"feature cache: {out} ({manifest['images']} images × {manifest['views']} views, {size:,.1f} MB of features)",
        highlight=False,
    )
