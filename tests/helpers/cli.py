"""Running ``icm`` in tests: through the installed entry point (a subprocess, where the process boundary is what is
tested: start-up, exit codes, signals, file descriptors) or in-process (the same Typer app through Click's
``CliRunner``: no interpreter start, models stay loaded between commands). Both give ``returncode``, ``stdout``
and ``stderr``, so one assertion helper serves both."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(sys.executable).with_name("icm")
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "icmkit"]


def icm(*args: str | Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """``icm ARGS`` through the installed console script."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([*COMMAND, *map(str, args)], capture_output=True, text=True, env=full_env, timeout=300)


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def run(*args: str | Path, env: dict | None = None) -> Ran:
    """``icm ARGS`` in this process (``env`` set for the call only); an unexpected exception propagates."""
    from typer.testing import CliRunner

    from icmkit.cli.main import app

    result = CliRunner().invoke(app, [str(a) for a in args], env=env, catch_exceptions=False)
    return Ran(result.exit_code, result.stdout, result.stderr)


def assert_user_error(result, fragment: str) -> None:
    """One ``error:`` line on stderr, status 2, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert fragment in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
