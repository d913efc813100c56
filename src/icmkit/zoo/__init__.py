"""Shipped weights: one JSON table per model family, weights as safetensors beside it.

Each entry records how its weights were made (λ, steps, data, the exact command) and what they
measured, so that ``icm zoo`` and the README can say it without reading code.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

from icmkit.errors import WeightsFileError

ZOO_DIR = Path(str(resources.files(__package__)))


@dataclass(frozen=True)
class ZooEntry:
    """One shipped weights file: its family and quality, how it was trained and what it measured (a table row)."""

    family: str
    quality: int
    file: str
    architecture: str
    lmbda: float
    steps: int
    data: str
    command: str
    beta: float = 0.0  # weight of the perception (MMD) term; 0 for MSE-only families
    sha256: str = ""  # of the weights file, hex
    kind: str = "pixel"  # "feature": decodes to backbone features (metrics hold top-1, not PSNR)
    metrics: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def path(self) -> Path:
        return ZOO_DIR / "weights" / self.file

    @property
    def available(self) -> bool:
        return self.path.is_file()


@cache
def family(name: str) -> tuple[ZooEntry, ...]:
    """Entries of one family whose weight file is present, ordered by quality (low → high rate)."""
    table = ZOO_DIR / f"{name}.json"
    if not table.is_file():
        return ()
    rows = json.loads(table.read_text())["entries"]
    entries = [ZooEntry(family=name, **row) for row in rows]
    return tuple(sorted((e for e in entries if e.available), key=lambda e: e.quality))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str) -> None:
    """Refuse a shipped weights file whose SHA-256 is not its zoo table's: corrupt, truncated or replaced."""
    actual = file_sha256(path)
    if actual != expected:
        raise WeightsFileError(
            f"{path}: SHA-256 {actual[:16]}… is not the zoo table's {expected[:16]}… (corrupt or replaced weights "
            "file; reinstall icmkit)"
        )


def families() -> list[str]:
    return sorted(p.stem for p in ZOO_DIR.glob("*.json"))
