"""What every command shares: error reporting, warnings on stderr, output-path safety."""

from __future__ import annotations

import functools
import os
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from icmkit.errors import IcmError, OutputExistsError

# Piped output is not wrapped at 80 columns: tables stay readable in logs and CI.
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True, soft_wrap=True)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    err_console.print(f"[yellow]warning:[/] {message}", highlight=False)


def user_errors(command):
    """Turn :class:`IcmError` into one line on stderr and exit status 2 (no traceback)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        previous = warnings.showwarning
        warnings.showwarning = _show_warning
        try:
            return command(*args, **kwargs)
        except IcmError as exc:
            err_console.print(f"[red]error:[/] {exc}", highlight=False)
            raise typer.Exit(code=exc.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("[red]interrupted[/]")
            raise typer.Exit(code=130) from None
        finally:
            warnings.showwarning = previous

    return wrapper


def check_output(
    path: Path, inputs: list[Path], force: bool, create_parent: bool = False, hint: str = "use --force to overwrite"
) -> None:
    """Refuse to overwrite an input ever (``--force`` included), or an existing file without ``--force``;
    the parent folder must exist unless the command creates it (``create_parent``)."""
    if any(same_file(path, source) for source in inputs):
        raise OutputExistsError(f"{path}: output would overwrite an input file (choose another output with -o)")
    if path.is_dir():
        raise OutputExistsError(f"{path}: output is a directory")
    if path.exists() and not force:
        raise OutputExistsError(f"{path}: already exists ({hint})")
    if not create_parent and not path.parent.exists():
        raise OutputExistsError(f"{path.parent}: output folder does not exist")


def same_file(a: Path, b: Path) -> bool:
    """The same file, by resolved path (symbolic links followed) or by identity (hard links, other spellings)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist: they cannot be one file
        return False


def is_interactive() -> bool:
    return sys.stderr.isatty()


CodecOption = Annotated[str, typer.Option("--codec", "-c", help="Codec name (see `icm codecs`).")]
QualityOption = Annotated[
    float | None,
    typer.Option(
        "--quality",
        "-q",
        help="Quality value in the codec's own knob (see `icm codecs`): an integer, or for the variable-rate "
        "learned codecs any value in their range (e.g. 3.5).",
    ),
]
DECODED_SUFFIX = ".decoded.png"  # never the name of the image a stream was made from
ForceOption = Annotated[
    bool, typer.Option("--force", "-f", help="Overwrite existing output files (never a file this command reads).")
]


def progress_bar(enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=not enabled,
    )
