"""Fuzz every input icmkit takes — the command kept where the README's figures name it.

The fuzzer lives in the package (:mod:`icmkit.fuzz`: stream mutations, the other surfaces, worker processes under
a memory cap and a per-case time limit, at icmkit's default limits), so that CI's seeded run (``tests/test_fuzz.py``)
does not load code from a script folder. This script only runs it::

    python benchmarks/fuzz.py [--cases 100000] [--seed 0] [--targets jpeg,image,...] [--workers 1] [--json out.json]
    python benchmarks/fuzz.py --seed 0 --case 1234      # rerun one case here, with its traceback

(the same as ``python -m icmkit.fuzz …``).
"""

from __future__ import annotations

import sys

from icmkit.fuzz.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
