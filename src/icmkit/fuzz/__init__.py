"""Fuzzing every input icmkit takes: streams into every decoder, and the other surfaces a user hands it (images to
compress, special files, weights files, training configs, ``icm bd`` inputs, features files at the pixel limit).

Cases are seeded and reproducible from ``--seed``, ``--targets`` and their index; they run in worker processes at
icmkit's default limits, under a memory cap and a per-case time limit, with each case's time and peak RSS
measured (:mod:`icmkit.fuzz.runner`). Stream mutations: :mod:`icmkit.fuzz.streams`; the other surfaces:
:mod:`icmkit.fuzz.surfaces`. ``tests/test_fuzz.py`` runs a small seeded run in CI::

    python -m icmkit.fuzz [--cases 100000] [--seed 0] [--targets icm-mse,jpeg,image,...] [--workers 1] [--json out.json]
    python -m icmkit.fuzz --seed 0 --case 1234 [--dump case.bin]    # rerun one case here, with its traceback
"""

from __future__ import annotations

from icmkit.fuzz.runner import (  # noqa: F401 (the public names)
    FAILURES,
    OUTCOMES,
    Summary,
    default_targets,
    print_summary,
    reproduce,
    reproduce_command,
    run_fuzz,
    schedule,
    target_of,
)
from icmkit.fuzz.streams import mutate  # noqa: F401
