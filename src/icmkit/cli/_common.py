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
from typer.core import TyperCommand, TyperGroup

from icmkit.errors import IcmError, OutputExistsError

# Piped output is not wrapped at 80 columns: tables stay readable in logs and CI.
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True, soft_wrap=True)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    err_console.print(f"[yellow]warning:[/] {message}", highlight=False)


def user_errors(command):
    """Turn :class:`IcmError` into one line on stderr and exit status 2 (no traceback); and so, at this boundary,
    whatever else escapes a command (MemoryError, OSError, RecursionError, torch's RuntimeError, a wrapped
    library's error). ``ICM_TRACEBACK=1`` lets those through with their traceback, for bug reports."""

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
        except Exception as exc:  # the boundary: whatever else escapes is one line too, never a traceback
            import click
            from rich.markup import escape

            from icmkit.errors import unexpected_error_line

            passed = (typer.Exit, typer.Abort)  # typer >= 0.29 has its own, not click's
            if isinstance(exc, (*passed, click.exceptions.Exit, click.exceptions.Abort, click.ClickException)):
                raise  # typer's own exits (typer.Exit is a RuntimeError) and usage errors
            if os.environ.get("ICM_TRACEBACK", "") not in ("", "0"):
                raise
            err_console.print(f"[red]error:[/] {escape(unexpected_error_line(exc))}", highlight=False)
            raise typer.Exit(code=2) from None
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
SkipExistingOption = Annotated[
    bool,
    typer.Option(
        "--skip-existing",
        help="Leave inputs whose output exists (resume an interrupted batch: outputs are written whole or not at all).",
    ),
]


def rewrap(text: str | None) -> str | None:
    """Help text whose paragraphs are single lines, so that the terminal wraps them (not the docstring's line
    breaks); paragraphs are kept, and so is a paragraph click marks verbatim with a leading ``\\b`` line."""
    if not text:
        return text
    import inspect

    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(p if p.startswith("\b") else " ".join(p.split()) for p in paragraphs)


def _without_type_label(param) -> None:
    """Show ``param`` in help without a type label (``<bool>``, ``<list[Path]>``): only a metavar it names itself."""
    metavar = param.metavar or ""
    if param.param_type_name == "argument" or getattr(param, "is_flag", False) or getattr(param, "count", False):
        metavar = ""  # an argument's name (or metavar) is shown already; a flag takes no value
    param.display_type_rich = lambda ctx=None: metavar


class _PlainHelp:
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.help = rewrap(self.help)

    def get_params(self, ctx):
        params = super().get_params(ctx)
        for param in params:
            _without_type_label(param)
        return params


class IcmCommand(_PlainHelp, TyperCommand):
    """A command whose help the terminal wraps (docstrings are rewrapped) and that shows no type labels."""


class IcmGroup(_PlainHelp, TyperGroup):
    """The ``icm`` group, with :class:`IcmCommand`'s help."""
