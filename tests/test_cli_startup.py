"""`icm --help` answers at once: argument parsing and every command's help load no numpy, Pillow or torch."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "numpy", "PIL", "matplotlib", "scipy", "timm")

_PROBE = """
import json, sys
from icmkit.cli.main import main
loaded = {}
for command in COMMANDS:
    sys.argv = ["icm", *([command] if command else []), "--help"]
    try:
        main()
    except SystemExit:
        pass
    loaded[command or "icm"] = [name for name in HEAVY if name in sys.modules]
print(json.dumps(loaded))
"""


def _commands() -> list[str]:
    """Every command `icm` registers (and "" for `icm --help` itself), read from the app, not restated."""
    import typer

    from icmkit.cli.main import app

    return ["", *typer.main.get_command(app).commands]


def test_help_of_every_command_imports_nothing_heavy():
    commands = _commands()
    assert {"compress", "bench", "train", "cache"} <= set(commands)
    probe = f"COMMANDS = {commands!r}\nHEAVY = {HEAVY!r}\n{_PROBE}"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded == {command or "icm": [] for command in commands}
