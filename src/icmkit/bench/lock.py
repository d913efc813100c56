"""One ``icm bench`` per output folder: two runs appending to one ``results.csv`` would interleave rows and
code everything twice. The lock is a file holding its owner's pid and host; a lock whose process is gone
(a killed run) is stale and taken over, so an interrupted run can always resume."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from icmkit.errors import IcmError

LOCK_NAME = ".icm-bench.lock"


class FolderInUseError(IcmError):
    """Another live ``icm bench`` holds the output folder."""


@contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold ``folder``'s lock for the duration of the block; refuse when a live process holds it."""
    path = folder / LOCK_NAME
    me = {"pid": os.getpid(), "host": socket.gethostname()}
    for _ in range(3):  # a stale lock is removed, then created again exclusively (another taker may win)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _owner(path)
            if owner is not None and _alive(owner, me["host"]):
                raise FolderInUseError(
                    f"{folder} is in use by another icm bench (pid {owner['pid']} on {owner['host']}); wait for it "
                    f"to finish or pass another --out (if that process is gone, delete {path})"
                ) from None
            path.unlink(missing_ok=True)  # stale: its owner died without cleaning up
            continue
        with os.fdopen(fd, "w") as handle:
            json.dump(me, handle)
        break
    else:
        raise FolderInUseError(f"{folder}: could not take the lock {path}; another run keeps taking it")
    try:
        yield
    finally:
        if _owner(path) == me:
            path.unlink(missing_ok=True)


def _owner(path: Path) -> dict | None:
    """The lock's owner, or None when the file is gone or unreadable (a crash mid-write: stale)."""
    try:
        owner = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(owner, dict) or not isinstance(owner.get("pid"), int):
        return None
    return {"pid": owner["pid"], "host": str(owner.get("host", ""))}


def _alive(owner: dict, host: str) -> bool:
    if owner["host"] != host:
        return True  # a process on another machine (shared folder): cannot be checked, so never taken over
    try:
        os.kill(owner["pid"], 0)  # signal 0: existence check only
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True
