"""Console progress of ``icm train``: a progress bar on a terminal; otherwise JSON lines on stdout and a plain
progress line (step / steps, rate, ETA) on stderr every few seconds (:mod:`icmkit.cli.progress`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.markup import escape
from rich.table import Table

from icmkit.cli._common import console
from icmkit.cli.progress import Progress
from icmkit.train.reporting import Reporter, print_json_line

_SHOWN_METRICS = ("loss", "bpp", "psnr", "perception", "accuracy", "aux")  # accuracy: MoCo's instance task


class ProgressReporter:
    """A reporter moving ``progress`` to each progress record's step (its loss / bpp / PSNR beside it); on a
    terminal events become lines above the bar, elsewhere every record is also a JSON line on stdout.

    Args:
        progress: The open progress display of the training run, counting steps.
    """

    def __init__(self, progress: Progress):
        self.progress = progress

    def __call__(self, record: dict) -> None:
        if not self.progress.interactive:
            print_json_line(record)
        if "loss" in record:
            self.progress.update(record["step"], status=_metrics_text(record))
            return
        if record.get("event") in ("started", "resumed"):
            # Restart the speed estimate: steps before a resume were not run by this process.
            self.progress.restart(record["step"])
        if self.progress.interactive:
            details = "  ".join(f"{k} {v}" for k, v in record.items() if k != "event")
            self.progress.print(f"{record.get('event', 'record')}  {details}")


def _metrics_text(record: dict) -> str:
    parts = [f"{name} {record[name]:.4g}" for name in _SHOWN_METRICS if name in record]
    return "  ".join(parts).replace("psnr ", "PSNR ")


@contextmanager
def training_reporter(total_steps: int, enabled: bool = True) -> Iterator[Reporter]:
    """Progress of ``total_steps`` on stderr (a bar on a terminal, else timed lines) and, off a terminal, every
    record as a JSON line on stdout (log-friendly). ``enabled=False`` (torchrun ranks but 0): JSON lines only."""
    if not enabled:
        yield print_json_line
        return
    with Progress("icm train", total_steps, unit="steps", transient=False) as progress:
        yield ProgressReporter(progress)


def print_config_fields() -> None:
    from icmkit.train.config import describe_fields

    table = Table(title="icm train fields (YAML keys and KEY=VALUE overrides)")
    for column in ("field", "section", "type", "default", "documentation"):
        table.add_column(column, overflow="fold")
    for row in describe_fields():
        table.add_row(*(escape(row[key]) for key in ("name", "section", "type", "default", "doc")))
    console.print(table, highlight=False)
