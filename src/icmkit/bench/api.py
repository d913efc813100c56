"""Deprecated: the benchmark entry point moved to :mod:`icmkit.bench.benchmark` (``icmkit.api`` is the public
façade; two modules called ``api`` were one too many). Kept for one release."""

from icmkit.deprecation import renamed

__getattr__ = renamed(
    __name__,
    {name: f"icmkit.bench.benchmark:{name}" for name in ("BenchOptions", "BenchOutcome", "run_bench")},
)
