"""Sharding a benchmark over processes or nodes started by ``torchrun``.

Each rank codes and scores its slice of the images into its own ``results.rank<r>-of-<n>.csv``; after
a barrier (gloo, so it works on CPUs), rank 0 merges the files into ``results.csv`` and reports. ::

    torchrun --nproc_per_node 8 -m icmkit bench --data imagenet/val --out bench-val
    torchrun --nnodes 4 --node_rank $R --master_addr $HOST --nproc_per_node 8 -m icmkit bench ...
"""

from __future__ import annotations

from pathlib import Path

from icmkit.bench.runner import csv_header, read_results
from icmkit.codecs.base import parse_quality
from icmkit.train.distributed import launch_environment


def rank_and_world() -> tuple[int, int]:
    rank, world, _ = launch_environment()
    return rank, world


def init() -> None:
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="gloo")


def barrier() -> None:
    import torch.distributed as dist

    dist.barrier()


def finish() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def rank_results_name(rank: int, world: int) -> str:
    return f"results.rank{rank}-of-{world}.csv"


def merge(out: Path, world: int, sample_order: list[str]) -> Path:
    """Concatenate the ranks' rows into ``results.csv`` (and their reference rows into ``reference.csv``)
    in dataset order, as a 1-process run writes them, with the columns the ranks wrote."""
    from icmkit.bench.summary import write_csv

    position = {key: i for i, key in enumerate(sample_order)}
    paths = [out / rank_results_name(rank, world) for rank in range(world)]
    rows = [r for path in paths for r in read_results(path)]
    rows.sort(key=lambda r: (position.get(r["key"], len(position)), r["codec"], parse_quality(r["quality"])))
    write_csv(out / "results.csv", _header(paths), rows)
    names = [out / rank_results_name(rank, world).replace("results", "reference", 1) for rank in range(world)]
    if any(path.is_file() for path in names):
        references = [r for path in names for r in read_results(path)]
        references.sort(key=lambda r: (position.get(r["key"], len(position)), r["reference"]))
        write_csv(out / "reference.csv", _header(names), references)
    return out / "results.csv"


def _header(paths: list[Path]) -> list[str]:
    """The columns of the first rank's file that has any (every rank runs the same task)."""
    return next((header for header in map(csv_header, paths) if header), [])
