"""File access shared by commands: atomic writes (temp file in the destination folder, fsync, rename) and
bounded reads of user files with one clear error each."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, data: bytes) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp creates 0600; give the file ordinary permissions
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_user_file(
    path: str | Path,
    max_bytes: int,
    error: type[Exception],
    too_large: type[Exception] | None = None,
    label: str | None = None,
) -> bytes:
    """A user's file, read whole if at most ``max_bytes``; ``error`` (``too_large`` for size) when it cannot be."""
    path = Path(path)
    label = label or str(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise (too_large or error)(f"{label}: {size:,} bytes is too large for this kind of file")
        return path.read_bytes()
    except FileNotFoundError:
        raise error(f"{label}: no such file") from None
    except IsADirectoryError:
        raise error(f"{label}: is a directory") from None
    except PermissionError:
        raise error(f"{label}: permission denied") from None


def complete_lines(path: str | Path) -> str:
    """A file appended line by line, up to its last complete line: a run killed mid-append leaves a partial
    last line, which must not be read as a (truncated) record."""
    text = Path(path).read_text()
    return text[: text.rfind("\n") + 1]


def drop_partial_line(path: str | Path) -> None:
    """Cut such a file back to its last complete line before appending to it again."""
    path = Path(path)
    if not path.is_file():
        return
    with path.open("rb+") as handle:
        data = handle.read()
        if data and not data.endswith(b"\n"):
            handle.truncate(data.rfind(b"\n") + 1)
