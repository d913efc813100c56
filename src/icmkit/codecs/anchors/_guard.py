"""Turning library failures on foreign or damaged bytes into one-line :class:`BitstreamError`\\ s."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from icmkit.errors import BitstreamError, IcmError


def stream_bytes(data: object, codec: str) -> bytes:
    """Accept only non-empty bytes-like input, so that every decoder starts from real bytes."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BitstreamError(f"{codec}: expected bytes to decode, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise BitstreamError(f"{codec}: empty stream")
    return data


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0][:160] if text else "") or type(exc).__name__


@contextmanager
def decoding(codec: str) -> Iterator[None]:
    """Re-raise whatever a third-party decoder throws as a BitstreamError naming ``codec``.

    Decoders report corrupt input with their own exception types (OSError, ValueError, av.error.*,
    imagecodecs errors); callers of icmkit should only ever see one kind, with one line.
    """
    try:
        yield
    except IcmError:
        raise
    except MemoryError:
        raise BitstreamError(f"{codec}: stream needs more memory than is available to decode") from None
    except Exception as exc:  # noqa: BLE001 - any library failure here means the bytes are bad
        raise BitstreamError(f"{codec}: not a valid stream ({one_line(exc)})") from exc
