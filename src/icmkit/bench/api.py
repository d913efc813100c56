"""``run_bench``: the whole benchmark (what ``icm bench`` calls) from data, codecs and a task model."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from icmkit.bench import distributed, runner
from icmkit.bench.datasets import open_dataset
from icmkit.bench.plan import parse_codec_spec
from icmkit.bench.plots import plot_curves
from icmkit.bench.report import write_report
from icmkit.bench.summary import BD_COLUMNS, SUMMARY_COLUMNS, bd_table, summarize, write_csv
from icmkit.errors import IcmError

DEFAULT_CODECS = "jpeg,webp,hevc444,avif,icm-mse"
TASKS = ("classify", "fidelity")


@dataclass
class BenchOptions:
    out: Path
    data: Path | None = None  # None: the photos shipped with icmkit
    task: str = "classify"
    codecs: str = DEFAULT_CODECS
    model: str = "tf_efficientnet_lite0"
    model_weights: str | None = "default"
    anchor: str = "hevc444"
    limit: int | None = None
    workers: int = 1


@dataclass
class BenchOutcome:
    results: Path
    summary: list[dict]
    bd: list[dict]
    report: Path
    seconds: float


def run_bench(options: BenchOptions, progress=None) -> BenchOutcome | None:
    """Run the benchmark; under torchrun every rank codes its shard and rank 0 alone reports
    (other ranks return None)."""
    if options.task not in TASKS:
        raise IcmError(f"unknown task {options.task!r}; choose one of {', '.join(TASKS)}")
    if options.workers < 1:
        raise IcmError("--workers must be at least 1")
    from icmkit.data import SAMPLES_DIR

    started = time.monotonic()
    dataset = open_dataset(options.data or SAMPLES_DIR, options.task).limit(options.limit)
    plans = parse_codec_spec(options.codecs)
    if options.anchor not in {p.codec for p in plans}:
        raise IcmError(f"anchor {options.anchor!r} is not among the benchmarked codecs ({options.codecs})")
    classifier = None
    if options.task == "classify":
        from icmkit.tasks import load_classifier

        classifier = load_classifier(options.model, weights=options.model_weights)
    rank, world = distributed.rank_and_world()
    sharded = world > 1
    if sharded:
        distributed.init()
    run = runner.BenchRun(
        dataset=dataset.shard(rank, world) if sharded else dataset, task=options.task, plans=plans,
        out=options.out, classifier=classifier, workers=options.workers,
        results_name=distributed.rank_results_name(rank, world) if sharded else "results.csv",
    )
    if progress is not None:
        run.progress = progress(runner.count_pending(run))
    results = runner.execute(run)
    if sharded:
        distributed.barrier()
        if rank != 0:
            distributed.finish()
            return None
        results = distributed.merge(options.out, world, [s.key for s in dataset.samples])
        distributed.finish()
    # The folder may hold rows of earlier runs (other codecs, a larger --limit): report this run's only.
    planned = {(p.codec, str(q)) for p in plans for q in p.qualities}
    keys = {s.key for s in dataset.samples}
    rows = [r for r in runner.read_results(results) if (r["codec"], r["quality"]) in planned and r["key"] in keys]
    summary = summarize(rows)
    table = bd_table(summary, options.anchor)
    write_csv(options.out / "summary.csv", SUMMARY_COLUMNS, summary)
    write_csv(options.out / "bd.csv", BD_COLUMNS, table)
    meta = {"data": str(options.data or "icmkit sample photos"), "task": options.task, "images": len(dataset.samples),
            "model": options.model if classifier else "—", "anchor": options.anchor, "codecs": options.codecs}
    plots = plot_curves(summary, options.out / "plots", title=f"{meta['data']} — {options.task}")
    report = write_report(options.out, meta, rows, summary, table, plots, SUMMARY_COLUMNS, BD_COLUMNS)
    (options.out / "run.json").write_text(json.dumps({**asdict(options), "out": str(options.out),
                                                      "data": meta["data"]}, indent=2))
    return BenchOutcome(results, summary, table, report, time.monotonic() - started)
