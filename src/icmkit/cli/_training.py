"""Console progress of ``icm train``: a rich progress bar on a terminal, JSON lines otherwise."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from icmkit.cli._common import console, err_console
from icmkit.train.reporting import Reporter, print_json_line

_SHOWN_METRICS = ("loss", "bpp", "psnr", "perception", "accuracy", "aux")  # accuracy: MoCo's instance task


class ProgressBar:
    """A reporter drawing progress records as a bar with the latest loss / bpp / PSNR, events as lines."""

    def __init__(self, progress: Progress, total_steps: int):
        self.progress = progress
        self.task = progress.add_task("training", total=total_steps, metrics="")

    def __call__(self, record: dict) -> None:
        if "loss" in record:
            self.progress.update(self.task, completed=record["step"], metrics=_metrics_text(record))
            return
        if record.get("event") in ("started", "resumed"):
            # Restart the speed estimate: steps before a resume were not run by this process.
            self.progress.reset(self.task, completed=record["step"])
        details = "  ".join(f"{k} {v}" for k, v in record.items() if k != "event")
        self.progress.console.print(f"{record.get('event', 'record')}  {details}", highlight=False)


def _metrics_text(record: dict) -> str:
    parts = [f"{name} {record[name]:.4g}" for name in _SHOWN_METRICS if name in record]
    return "  ".join(parts).replace("psnr ", "PSNR ")


@contextmanager
def training_reporter(total_steps: int, interactive: bool) -> Iterator[Reporter]:
    """A progress bar on stderr when attached to a terminal; otherwise JSON lines on stdout (log-friendly)."""
    if not interactive:
        yield print_json_line
        return
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[metrics]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
    )
    with progress:
        yield ProgressBar(progress, total_steps)


def print_config_fields() -> None:
    from icmkit.train.config import describe_fields

    table = Table(title="icm train fields (YAML keys and KEY=VALUE overrides)")
    for column in ("field", "type", "default", "documentation"):
        table.add_column(column, overflow="fold")
    for row in describe_fields():
        table.add_row(*(escape(row[key]) for key in ("name", "type", "default", "doc")))
    console.print(table, highlight=False)
