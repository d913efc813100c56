"""Where a run's records go: ``<out>/log.jsonl``, the console, and TensorBoard when it is installed."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

Reporter = Callable[[dict], None]


def print_json_line(record: dict) -> None:
    """The plain console reporter: one JSON object per line (logs, pipes, ``python -m icmkit.train``)."""
    print(json.dumps(record), flush=True)


class RunLog:
    """Every record is appended to ``log.jsonl`` and handed to ``report``; progress records (a step and
    its numbers, not events) also become TensorBoard scalars under ``<out>/tensorboard``.

    Args:
        out: The run's output folder (it must exist).
        report: Also called with every record (``icm train``: the console's progress reporter).
        tensorboard: Whether to write TensorBoard scalars too (skipped, with a note, when it is not installed).
    """

    def __init__(self, out: Path, report: Reporter, tensorboard: bool):
        self.path = out / "log.jsonl"
        self.report = report
        self.writer = None
        if tensorboard:
            self.writer = _open_tensorboard(out / "tensorboard")
            if self.writer is None:
                self.write(
                    {
                        "event": "info",
                        "message": "tensorboard is not installed (pip install 'icmkit[train]'); no TensorBoard logs",
                    }
                )

    def write(self, record: dict) -> None:
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        self.report(record)
        if self.writer is not None and "step" in record and "event" not in record:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.writer.add_scalar(f"train/{key}", value, record["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _open_tensorboard(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch raises this when the tensorboard package is missing
        return None
    return SummaryWriter(log_dir=str(folder))
