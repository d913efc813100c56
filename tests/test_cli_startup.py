"""`icm --help` answers at once: argument parsing and every command's help load no numpy, Pillow or torch."""

from __future__ import annotations

import json
import subprocess
import sys

COMMANDS = [
    "",
    "compress",
    "decompress",
    "info",
    "predict",
    "probe",
    "codecs",
    "zoo",
    "demo",
    "bench",
    "bd",
    "train",
    "cache",
]
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


def test_help_of_every_command_imports_nothing_heavy():
    probe = f"COMMANDS = {COMMANDS!r}\nHEAVY = {HEAVY!r}\n{_PROBE}"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded == {command or "icm": [] for command in COMMANDS}
