"""``python -m icmkit.train key=value ...`` — train a learned pixel codec (see TrainConfig)."""

from __future__ import annotations

import sys

from icmkit.errors import IcmError
from icmkit.train.config import TrainConfig, apply_overrides
from icmkit.train.loop import Trainer


def main(argv: list[str]) -> int:
    try:
        config = apply_overrides(TrainConfig(), argv)
        path = Trainer(config).run()
    except (IcmError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"weights: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
