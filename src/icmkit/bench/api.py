"""``run_bench``: the whole benchmark (what ``icm bench`` calls) from data, codecs and a task model."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from icmkit.bench import distributed, provenance, runner
from icmkit.bench.datasets import open_dataset
from icmkit.bench.plan import parse_codec_spec
from icmkit.bench.plots import plot_curves
from icmkit.bench.report import write_report
from icmkit.bench.summary import BD_COLUMNS, SUMMARY_COLUMNS, bd_table, summarize, write_csv
from icmkit.errors import IcmError

DEFAULT_CODECS = "jpeg,webp,hevc444,avif,icm-mse,icm-mmd"
TASKS = ("classify", "detect", "segment", "fidelity")
DEFAULT_MODELS = {"classify": "tf_efficientnet_lite0", "detect": "fasterrcnn_resnet50_fpn",
                  "segment": "maskrcnn_resnet50_fpn"}


@dataclass
class BenchOptions:
    out: Path
    data: Path | None = None  # None: the photos shipped with icmkit
    task: str = "classify"
    codecs: str = DEFAULT_CODECS
    model: str | None = None  # None: the task's default (DEFAULT_MODELS)
    model_weights: str | None = "default"
    anchor: str = "hevc444"
    limit: int | None = None
    workers: int = 1
    detector_min_size: int = 800  # torchvision's default input scale for its COCO detectors


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
    if options.data is None and options.task in ("detect", "segment"):
        raise IcmError("detection and segmentation need --data: a COCO folder (images + instances JSON)")
    dataset = open_dataset(_resolve_data(options.data) or SAMPLES_DIR, options.task).limit(options.limit)
    plans = parse_codec_spec(options.codecs)
    if options.anchor not in {p.codec for p in plans}:
        raise IcmError(f"anchor {options.anchor!r} is not among the benchmarked codecs ({options.codecs})")
    model_name = options.model or DEFAULT_MODELS.get(options.task)
    classifier = detector = None
    if options.task == "classify":
        from icmkit.tasks import load_classifier

        classifier = load_classifier(model_name, weights=options.model_weights)
    elif options.task in ("detect", "segment"):
        from icmkit.tasks.detection import load_detector

        detector = load_detector(model_name, weights=options.model_weights, min_size=options.detector_min_size,
                                 max_size=max(1333, options.detector_min_size))
        if options.task == "segment" and not detector.has_masks:
            raise IcmError(f"{model_name} predicts no masks; segmentation needs a Mask R-CNN")
    rank, world = distributed.rank_and_world()
    sharded = world > 1
    options.out.mkdir(parents=True, exist_ok=True)
    scored_by = (model_name, options.model_weights) if options.task != "fidelity" else (None, None)
    identity = provenance.describe(options.task, *scored_by, plans)
    # Every rank checks (so all refuse together); rank 0 alone writes.
    provenance.check_and_record(options.out, identity, any(options.out.glob("results*.csv")), write=rank == 0)
    if sharded:
        distributed.init()
    run = runner.BenchRun(
        dataset=dataset.shard(rank, world) if sharded else dataset, task=options.task, plans=plans,
        out=options.out, classifier=classifier, detector=detector, workers=options.workers,
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
    summary = summarize(rows, _coco_metrics(options, dataset) if detector is not None else None)
    table = bd_table(summary, options.anchor)
    write_csv(options.out / "summary.csv", SUMMARY_COLUMNS, summary)
    write_csv(options.out / "bd.csv", BD_COLUMNS, table)
    meta = {"data": str(options.data or "icmkit sample photos"), "task": options.task, "images": len(dataset.samples),
            "model": model_name if options.task != "fidelity" else "—", "anchor": options.anchor, "codecs": options.codecs}
    plots = plot_curves(summary, options.out / "plots", title=f"{Path(str(meta['data'])).name or meta['data']} — {options.task}")
    report = write_report(options.out, meta, rows, summary, table, plots, SUMMARY_COLUMNS, BD_COLUMNS)
    (options.out / "run.json").write_text(json.dumps({**asdict(options), "out": str(options.out),
                                                      "data": meta["data"], "model": model_name}, indent=2))
    return BenchOutcome(results, summary, table, report, time.monotonic() - started)


def _resolve_data(data: Path | None) -> Path | None:
    """A folder, or the name of a standard set (``kodak``) that is downloaded once into the cache."""
    from icmkit.bench.download import STANDARD_SETS

    if data is not None and not Path(data).exists() and str(data) in STANDARD_SETS:
        return STANDARD_SETS[str(data)]()
    return data


def _coco_metrics(options: BenchOptions, dataset):
    """mAP of each codec × quality from its saved detections (bbox for detect, masks for segment), in %."""
    from icmkit.tasks.detection import CocoEvaluator

    prefix = "segm_" if options.task == "segment" else ""

    def metrics(codec: str, quality: int, rows: list[dict]) -> dict:
        saved = runner.read_detections(options.out, codec, quality)
        evaluator = CocoEvaluator(dataset.annotations, segm=options.task == "segment")
        keys = [r["key"] for r in rows if r["key"] in saved]
        records = [record for key in keys for record in saved[key]["records"]]
        evaluator.update_from_json(records, image_ids=[saved[key]["image_id"] for key in keys])
        result = evaluator.compute()
        return {"map": result[f"{prefix}map"], "map50": result[f"{prefix}map50"]}

    return metrics
