"""Progress of long work, on stderr so that stdout stays machine-readable.

On a terminal: a rich progress bar. Anywhere else (a log file, CI, a pipe, a notebook cell): a plain line every
few seconds — ``icm compress with icm-mse: 12/90 images (13 %), 1.52/s, elapsed 8 s, ETA 51 s`` — and, when any
line was printed, a closing one. Until the first unit is done the first line waits 30 s, so that a mistake found
while starting stays one ``error:`` line. ``ICM_PROGRESS_SECONDS`` sets the seconds between plain lines (0: one
line per update). One helper for every command (``icm bench``, ``compress``, ``decompress``, ``predict``,
``train``, ``probe``).
"""

from __future__ import annotations

import math
import os
import threading
import time

from icmkit.cli._common import err_console, is_interactive

INTERVAL_ENV = "ICM_PROGRESS_SECONDS"
DEFAULT_INTERVAL = 5.0
QUIET_START = 30.0  # seconds without a line while nothing is done yet


def plain_interval() -> float:
    """Seconds between plain progress lines: ``ICM_PROGRESS_SECONDS``, or 5 (an unusable value: 5)."""
    try:
        value = float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL))
    except ValueError:
        return DEFAULT_INTERVAL
    return value if math.isfinite(value) and value >= 0 else DEFAULT_INTERVAL


def format_duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 07 min``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class Progress:
    """How far a job of ``total`` units is. A context manager; ``advance(n)`` or ``update(completed)`` as work
    finishes, ``restart(completed)`` when work done before (a resumed run) must not count in the rate,
    ``print(line)`` for a message that must not tear the bar.

    Args:
        description: What is being done, the start of every line (e.g. ``icm compress with icm-mse``).
        total: How many units the job has (0: unknown).
        unit: The units' name in plain lines (``images``, ``steps``).
        enabled: ``False`` shows nothing (one file; a torchrun rank that does not report).
        interactive: ``True``: a bar; ``False``: plain lines. ``None``: a bar when stderr is a terminal.
        interval: Seconds between plain lines (0: one per update). ``None``: ``ICM_PROGRESS_SECONDS``, or 5.
        transient: Whether the bar disappears when the job ends.
    """

    def __init__(
        self,
        description: str,
        total: int,
        *,
        unit: str = "items",
        enabled: bool = True,
        interactive: bool | None = None,
        interval: float | None = None,
        transient: bool = True,
    ):
        self.description = description
        self.total = max(int(total), 0)
        self.unit = unit
        self.enabled = enabled
        self.interactive = is_interactive() if interactive is None else interactive
        self.interval = plain_interval() if interval is None else interval
        self.transient = transient
        self.completed = 0
        self.status = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bar = None
        self._task = None
        self._lines = 0
        self._began = self._since = time.monotonic()
        self._since_completed = 0

    # -- context ---------------------------------------------------------------------------------------
    def __enter__(self) -> Progress:
        self._began = self._since = time.monotonic()
        if not self.enabled:
            return self
        if self.interactive:
            self._bar = _rich_bar(self.transient)
            self._bar.__enter__()
            self._task = self._bar.add_task(self.description, total=self.total or None, status="")
        elif self.interval > 0:
            self._thread = threading.Thread(target=self._tick, name="icm-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._bar is not None:
            self._bar.__exit__(exc_type, exc, traceback)
        elif self.enabled and self._lines and exc_type is None:
            self._write(self._final_line())

    # -- updates ---------------------------------------------------------------------------------------
    def advance(self, n: int = 1) -> None:
        self.update(self.completed + n)

    def update(self, completed: int, status: str | None = None) -> None:
        """The units done so far (and, optionally, a short status shown beside them: a loss, a file)."""
        with self._lock:
            self.completed = completed
            if status is not None:
                self.status = status
        if self._bar is not None:
            self._bar.update(self._task, completed=completed, status=self.status)
        elif self.enabled and not self.interactive and self.interval <= 0:
            self._write(self.line())

    def restart(self, completed: int) -> None:
        """Count the rate and ETA from here: ``completed`` units were done before this process started."""
        with self._lock:
            self.completed = self._since_completed = completed
            self._since = time.monotonic()
        if self._bar is not None:
            self._bar.reset(self._task, completed=completed)

    def print(self, message: str) -> None:
        """A line of its own on stderr (above the bar on a terminal)."""
        if self._bar is not None:
            self._bar.console.print(message, highlight=False, markup=False)
        else:
            self._write(message)

    # -- plain lines -----------------------------------------------------------------------------------
    def line(self) -> str:
        """``DESCRIPTION: done/total unit (pct %), rate/s, elapsed T, ETA T[, status]``."""
        with self._lock:
            done, status = self.completed, self.status
            elapsed = time.monotonic() - self._since
            fresh = done - self._since_completed
        parts = [f"{self.description}: {done:,}/{self.total:,} {self.unit}"]
        if self.total:
            parts[0] += f" ({100 * done / self.total:.0f} %)"
        rate = fresh / elapsed if fresh > 0 and elapsed > 0 else None
        if rate is not None:
            parts.append(f"{rate:.3g}/s")
        parts.append(f"elapsed {format_duration(time.monotonic() - self._began)}")
        if rate is not None and self.total and done < self.total:
            parts.append(f"ETA {format_duration((self.total - done) / rate)}")
        if status:
            parts.append(status)
        return ", ".join(parts)

    def _final_line(self) -> str:
        elapsed = time.monotonic() - self._began
        return f"{self.description}: {self.completed:,}/{self.total:,} {self.unit} in {format_duration(elapsed)}"

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            # Before the first unit is done, quiet for a while: a mistake found while starting (a bad image, a
            # missing model) stays the one line it is; a slow start still shows that the work goes on.
            started = self.completed > self._since_completed
            if started or time.monotonic() - self._began >= max(QUIET_START, self.interval):
                self._write(self.line())

    def _write(self, text: str) -> None:
        self._lines += 1
        err_console.print(text, highlight=False, markup=False, soft_wrap=True)


def _rich_bar(transient: bool):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.progress import Progress as RichProgress

    return RichProgress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=transient,
    )
