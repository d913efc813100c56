"""``python -m icmkit.train [--config FILE.yaml] [KEY=VALUE ...]`` — the same command as ``icm train``."""

from __future__ import annotations

import sys


def main(argv: list[str]) -> None:
    import typer

    from icmkit.cli.main import app

    command = typer.main.get_command(app).get_command(None, "train")
    command.main(argv, prog_name="python -m icmkit.train")


if __name__ == "__main__":
    main(sys.argv[1:])
