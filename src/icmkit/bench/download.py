"""The one place icmkit downloads anything: standard evaluation sets for users with internet.

Every download goes through :func:`fetch`, which honours ``ICM_OFFLINE=1`` (refuse, with the manual
alternative in the message), writes atomically into the cache folder and verifies what it got before
keeping it. Tests replace the opener; they never reach the network.
"""

from __future__ import annotations

import io
import os
import urllib.request
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from icmkit.errors import IcmError
from icmkit.fileio import atomic_write

KODAK_URL = "https://r0k.us/graphics/kodak/kodak/kodim{:02d}.png"
KODAK_COUNT = 24
KODAK_SIZES = {(768, 512), (512, 768)}

Opener = Callable[[str], bytes]


def cache_dir() -> Path:
    root = os.environ.get("ICM_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"), "icmkit"
    )
    return Path(root)


def _urlopen(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - fixed https URLs only
        return response.read()


def fetch(url: str, target: Path, verify: Callable[[bytes], None], opener: Opener = _urlopen) -> Path:
    """Download ``url`` to ``target`` unless it is already there; ``verify`` raises on bad content."""
    if target.is_file():
        return target
    if os.environ.get("ICM_OFFLINE") == "1":
        raise IcmError(f"ICM_OFFLINE=1: not downloading {url}; place the file at {target} yourself")
    try:
        data = opener(url)
    except OSError as exc:
        raise IcmError(f"cannot download {url} ({exc}); place the file at {target} yourself") from None
    verify(data)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, data)
    return target


def _verify_kodak(name: str) -> Callable[[bytes], None]:
    def verify(data: bytes) -> None:
        # No checksums are published for the Kodak suite; accept only a complete PNG of Kodak's size.
        try:
            with Image.open(io.BytesIO(data)) as image:
                if image.format != "PNG" or image.size not in KODAK_SIZES or image.mode != "RGB":
                    raise IcmError(f"{name}: downloaded file is not a 768×512 RGB PNG")
                image.load()
        except (OSError, SyntaxError, ValueError) as exc:
            raise IcmError(f"{name}: downloaded file is not a valid PNG ({exc})") from None

    return verify


def kodak(folder: Path | None = None, opener: Opener = _urlopen) -> Path:
    """The 24 Kodak images (fidelity benchmarks), downloaded once into ``folder`` or the cache."""
    folder = folder or cache_dir() / "kodak"
    for index in range(1, KODAK_COUNT + 1):
        name = f"kodim{index:02d}.png"
        fetch(KODAK_URL.format(index), folder / name, _verify_kodak(name), opener)
    return folder


STANDARD_SETS = {"kodak": kodak}
