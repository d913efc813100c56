"""``python -m icmkit.fuzz``: see :mod:`icmkit.fuzz`."""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    from icmkit import fuzz
    from icmkit.fuzz import runner

    parser = argparse.ArgumentParser(
        prog="python -m icmkit.fuzz",
        description=fuzz.__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=fuzz.__doc__,
    )
    parser.add_argument("--cases", type=int, default=100_000, help="number of cases (default 100000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--targets", "--codecs", help="comma-separated targets (codec names, sniff, features, and the surfaces "
        "image, special, weights, yaml, bd, featlimit); default: all"
    )  # fmt: skip
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per case before it counts as a hang")
    parser.add_argument(
        "--memory-mb",
        type=int,
        default=3072,
        help="address space a worker may add after start-up (RLIMIT_AS; torch alone maps ≈5 GB); 0: no cap",
    )
    parser.add_argument("--json", help="write the summary here")
    parser.add_argument("--case", type=int, help="rerun only this case, here, with its traceback")
    parser.add_argument("--dump", help="with --case: write a stream case's bytes to this file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        runner.worker_main()
        return 0
    targets = args.targets.split(",") if args.targets else None
    if args.case is not None:
        runner.reproduce(args.seed, targets or runner.default_targets(), args.case, args.dump)
        return 0
    summary = runner.run_fuzz(
        args.cases,
        args.seed,
        targets,
        args.workers,
        args.timeout,
        args.memory_mb,
        progress=True,
        log=lambda line: print(line, file=sys.stderr, flush=True),
        checkpoint=(lambda partial: _write(args.json, partial, partial=True)) if args.json else None,
    )
    runner.print_summary(summary)
    if args.json:
        _write(args.json, summary)
    return 1 if any(summary.outcomes.get(k) for k in runner.FAILURES) else 0


def _write(path: str, summary, partial: bool = False) -> None:
    report = summary.as_dict()
    if partial:
        report["partial"] = {"cases_run": sum(report["outcomes"].values())}
    with open(path, "w") as handle:
        json.dump(report, handle, indent=1)


if __name__ == "__main__":
    sys.exit(main())
