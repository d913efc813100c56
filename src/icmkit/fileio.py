"""File access shared by commands: atomic writes (temp file in the destination folder, fsync, rename; without
``overwrite`` the final name is created exclusively, so a concurrent writer loses cleanly) and bounded reads of
user files (regular files only, never more than the limit + 1 bytes) with one clear error each."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

from icmkit.errors import OutputError, OutputExistsError, ResourceLimitError, os_error_line
from icmkit.limits import INPUT_BYTES_ENVIRONMENT, max_input_bytes

# link() is not supported here (FAT, some network and FUSE file systems): create the name exclusively instead.
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK, errno.ENOSYS, errno.EACCES}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, data: bytes, overwrite: bool = True) -> None:
    """Write ``data`` to ``path`` whole or not at all. ``overwrite=False``: refuse (:class:`OutputExistsError`)
    a ``path`` that exists when the data is in place, even one another process created meanwhile.
    Operating-system refusals (permission, a missing folder, a full disk) raise :class:`OutputError`."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {_reason(exc)}") from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp creates 0600; give the file ordinary permissions
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            _create_exclusively(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, FileExistsError):
            raise OutputError(f"cannot write {path}: {_reason(exc)}") from None
        raise


def _reason(exc: OSError) -> str:
    """An OSError's reason alone (its file name is the temporary one, which the user never chose)."""
    reason = exc.strerror or str(exc) or exc.__class__.__name__
    return reason[:1].lower() + reason[1:]


def _create_exclusively(tmp: str, path: Path) -> None:
    """Give the finished ``tmp`` the name ``path`` only if no file has it: link (fails if the name exists, in
    one step), then drop the temporary name; where links are unsupported, reserve the name with O_EXCL and
    rename over the reservation (an empty file is visible for that moment, never a partial one)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise OutputExistsError(f"{path}: already exists (created while this command ran; use --force)") from None
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            raise OutputExistsError(f"{path}: already exists (created while this command ran; use --force)") from None
        try:
            os.replace(tmp, path)
        except BaseException:
            path.unlink(missing_ok=True)  # our empty reservation, not someone's file
            raise
        return
    os.unlink(tmp)


def read_user_file(
    path: str | Path,
    max_bytes: int | None,
    error: type[Exception],
    too_large: type[Exception] | None = None,
    label: str | None = None,
) -> bytes:
    """A user's regular file, read whole if at most ``max_bytes`` (never more than ``max_bytes + 1`` bytes are
    read, whatever its size claims); ``error`` (``too_large`` for size) when it cannot be. Devices, FIFOs and
    sockets are refused without reading or blocking (opened non-blocking, checked with fstat). ``max_bytes``
    None: the input limit, :func:`icmkit.limits.max_input_bytes` (``ICM_MAX_INPUT_BYTES``)."""
    hint = f" (set {INPUT_BYTES_ENVIRONMENT} to raise it)" if max_bytes is None else ""
    max_bytes = max_input_bytes() if max_bytes is None else max_bytes
    path = Path(path)
    label = label or str(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise error(f"{label}: no such file") from None
    except IsADirectoryError:
        raise error(f"{label}: is a directory") from None
    except PermissionError:
        raise error(f"{label}: permission denied") from None
    except OSError as exc:
        raise error(f"{label}: cannot open ({os_error_line(exc)})") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise error(f"{label}: is a directory")
        if not stat.S_ISREG(mode):
            raise error(f"{label}: not a regular file ({_kind(mode)}); icmkit reads only files")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise error(f"{label}: cannot read ({os_error_line(exc)})") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise (too_large or ResourceLimitError)(f"{label}: larger than the input limit of {max_bytes:,} bytes{hint}")
    return data


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a file"


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
