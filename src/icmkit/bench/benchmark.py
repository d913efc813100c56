"""``run_bench``: the whole benchmark (what ``icm bench`` calls) from data, codecs and a task model."""

from __future__ import annotations

import json
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

from icmkit.bench import distributed, provenance, runner
from icmkit.bench.datasets import open_dataset
from icmkit.bench.lock import folder_lock
from icmkit.bench.plan import DEFAULT_CODECS, parse_codec_spec  # noqa: F401 (DEFAULT_CODECS re-exported)
from icmkit.bench.plots import plot_curves
from icmkit.bench.report import write_report
from icmkit.bench.summary import (
    BD_COLUMNS,
    SUMMARY_COLUMNS,
    ReportRows,
    bd_table,
    report_rows,
    summarize,
    write_csv,
)
from icmkit.bench.tasks import task_spec
from icmkit.errors import IcmError
from icmkit.fileio import atomic_write


@dataclass
class BenchOptions:
    """What :func:`run_bench` runs: one field per ``icm bench`` option. Only ``out`` (the output folder) is required."""

    out: Path
    data: Path | None = None  # None: the photos shipped with icmkit
    task: str = "classify"
    codecs: str = DEFAULT_CODECS
    model: str | None = None  # None: the task's default (its TaskSpec's default_model)
    model_weights: str | None = "default"
    anchor: str = "hevc444"
    limit: int | None = None
    workers: int = 1
    detector_min_size: int = 800  # torchvision's default input scale for its COCO detectors
    adaptive: str | None = None  # "keep-top1" / "keep-top5": add each codec's per-image adaptive variant
    adaptive_model: str | None = None  # the classifier the adaptive search keeps the decision of (default Lite0)


@dataclass
class BenchOutcome:
    """What a finished :func:`run_bench` wrote: the results and report files and the summary and BD rows."""

    results: Path
    summary: list[dict]
    bd: list[dict]
    report: Path
    seconds: float
    reference: list[dict] = field(default_factory=list)  # also the last rows of summary: uncompressed inputs
    carried: ReportRows | None = None  # the rows shown: this run's, and other codecs' from earlier runs


def run_bench(options: BenchOptions, progress=None, resumed=None) -> BenchOutcome | None:
    """Run the benchmark; under torchrun every rank codes its shard and rank 0 alone reports
    (other ranks return None). ``progress(total)`` is called once with the number of codings to do and
    returns a callback taking how many finished; ``resumed(rows, path, earlier)`` when the folder holds rows
    of earlier runs: ``rows`` of this run's plan kept (not coded again), ``earlier`` the other codecs' rows the
    report keeps (:class:`~icmkit.bench.summary.ReportRows`, see
    :func:`~icmkit.bench.summary.resume_message`). One run per ``options.out`` at a time
    (:mod:`icmkit.bench.lock`)."""
    task = task_spec(options.task)
    if options.workers < 1:
        raise IcmError("--workers must be at least 1")
    from icmkit.data import SAMPLES_DIR

    started = time.monotonic()
    if options.data is None and task.needs_data:
        raise IcmError(f"--task {task.name} needs --data: {task.data}")
    dataset = open_dataset(_resolve_data(options.data) or SAMPLES_DIR, options.task).limit(options.limit)
    plans = parse_codec_spec(_with_adaptive(options))
    if options.anchor not in {p.codec for p in plans}:
        raise IcmError(f"anchor {options.anchor!r} is not among the benchmarked codecs ({options.codecs})")
    model_name = (options.model or task.default_model) if task.load_model is not None else None
    evaluator = task.load_evaluator(model_name, options.model_weights, dataset, options.detector_min_size)
    runner.check_codecs(plans, evaluator)  # e.g. a feature codec of another backbone: refused before any coding
    rank, world = distributed.rank_and_world()
    options.out.mkdir(parents=True, exist_ok=True)
    # Rank 0 holds the lock for the ranks of its torchrun job (they share the folder by design).
    with folder_lock(options.out) if rank == 0 else nullcontext():
        sharded = world > 1
        scored_by = (model_name, options.model_weights) if model_name is not None else (None, None)
        identity = provenance.describe(options.task, *scored_by, plans)
        # Every rank checks (so all refuse together); rank 0 alone writes.
        has_rows = any(options.out.glob("results*.csv")) or any(options.out.glob("reference*.csv"))
        provenance.check_and_record(options.out, identity, has_rows, write=rank == 0)
        if sharded:
            distributed.init()
        run = runner.BenchRun(
            dataset=dataset.shard(rank, world) if sharded else dataset,
            task=options.task,
            plans=plans,
            out=options.out,
            evaluator=evaluator,
            workers=options.workers,
            results_name=distributed.rank_results_name(rank, world) if sharded else "results.csv",
        )
        kept = runner.count_kept(run)
        earlier = _shown_rows(runner.read_results(options.out / "results.csv"), plans, dataset.samples)
        if (kept or earlier.carried or earlier.partial) and resumed is not None:
            resumed(kept, options.out / run.results_name, earlier)
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
        return _report(options, run, dataset.samples, plans, model_name, results, started)


def _report(
    options: BenchOptions,
    run: runner.BenchRun,
    samples: list,
    plans: list,
    model_name: str | None,
    results: Path,
    started: float,
) -> BenchOutcome:
    """summary.csv, bd.csv, plots, report.html and run.json from the rows on disk."""
    # The folder may hold rows of earlier runs: those of other images (a larger --limit) stay out; other
    # codecs on this run's images stay in (a rerun with fewer codecs does not hide them), marked in the report.
    keys = {s.key for s in samples}
    shown = _shown_rows(runner.read_results(results), plans, samples)
    rows = shown.rows
    summary = summarize(rows, runner.set_metrics(run))
    reference = runner.reference_summary(run, keys)
    summary += reference  # rows without rate: the task model on uncompressed inputs (skipped by BD and curves)
    table = bd_table(summary, options.anchor)
    write_csv(options.out / "summary.csv", SUMMARY_COLUMNS, summary)
    write_csv(options.out / "bd.csv", BD_COLUMNS, table)
    data = str(options.data or "icmkit sample photos")
    meta = {
        "data": data,
        "task": options.task,
        "images": len(samples),
        "model": model_name,  # None for a task without a model (fidelity): the report says "none"
        "model_weights": options.model_weights,
        "anchor": options.anchor,
        "codecs": options.codecs,
    }
    plots = plot_curves(summary, options.out / "plots", title=f"{Path(data).name or data} — {options.task}")
    report = write_report(options.out, meta, rows, summary, table, plots, SUMMARY_COLUMNS, BD_COLUMNS, shown)
    record = {**asdict(options), "out": str(options.out), "data": data, "model": model_name}
    atomic_write(options.out / "run.json", json.dumps(record, indent=2).encode())
    return BenchOutcome(results, summary, table, report, time.monotonic() - started, reference, shown)


def _shown_rows(rows: list[dict], plans: list, samples: list) -> ReportRows:
    """The rows a report shows: this run's plan on its images, and other codecs an earlier run left in the
    folder when they cover the same images (a rerun with fewer codecs keeps them in the report and summary;
    provenance.json has refused any rows made with other weights or another task model)."""
    planned = {(p.codec, str(q)) for p in plans for q in p.qualities}
    return report_rows(rows, planned, {s.key for s in samples})


def _with_adaptive(options: BenchOptions) -> str:
    """The codec spec, plus (``--adaptive``) each codec's adaptive variant on its tolerance sweep."""
    if options.adaptive is None:
        return options.codecs
    if options.task != "classify":
        raise IcmError("--adaptive keeps a classifier's decision: it needs --task classify")
    from icmkit.bench.protocols import coding_view
    from icmkit.ratecontrol.adaptive import register_adaptive

    names = [plan.codec for plan in parse_codec_spec(options.codecs)]
    adaptive = register_adaptive(names, options.adaptive, options.adaptive_model, view=coding_view)
    return ",".join([options.codecs, *adaptive])


def _resolve_data(data: Path | None) -> Path | None:
    """A folder, or the name of a standard set (``kodak``) that is downloaded once into the cache."""
    from icmkit.bench.download import STANDARD_SETS

    if data is not None and not Path(data).exists() and str(data) in STANDARD_SETS:
        return STANDARD_SETS[str(data)]()
    return data
