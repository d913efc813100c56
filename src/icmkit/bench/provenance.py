"""What produced the rows of a results folder: the task model and each learned codec's weights.

An interrupted run resumes from the rows it finds; a later run with another task model, or with other
weights behind a codec name (a retrained zoo, a different checkpoint), must not silently reuse them.
``provenance.json`` records both; a mismatch is refused with a message saying what differs.
"""

from __future__ import annotations

import json
from pathlib import Path

from icmkit.bench.plan import CodecPlan
from icmkit.codecs.registry import get_codec
from icmkit.errors import IcmError
from icmkit.fileio import atomic_write

PROVENANCE_NAME = "provenance.json"


def describe(task: str, model: str | None, model_weights: str | None, plans: list[CodecPlan]) -> dict:
    codecs = {}
    for plan in plans:
        codec = get_codec(plan.codec)
        for quality in plan.qualities:
            fingerprint = codec.fingerprint(quality)
            if fingerprint:
                codecs[f"{plan.codec}:{quality}"] = fingerprint
    return {"task": task, "model": model or "", "model_weights": str(model_weights), "codecs": codecs}


def check_and_record(out: Path, current: dict, has_rows: bool, write: bool = True) -> None:
    """Refuse to resume over rows made differently; then record the union of what made them."""
    path = out / PROVENANCE_NAME
    previous = _read(path) if path.exists() else None
    if previous is not None and has_rows:
        before = (previous.get("task"), previous.get("model"), previous.get("model_weights"))
        now = (current["task"], current["model"], current["model_weights"])
        if before[0] == now[0] and before != now:
            raise IcmError(
                f"{out} holds results scored with task model {before[1]} (weights {before[2]}), not "
                f"{now[1]} (weights {now[2]}); use another --out"
            )
        stale = sorted(k for k, v in current["codecs"].items() if previous.get("codecs", {}).get(k, v) != v)
        if stale:
            raise IcmError(
                f"{out} holds results of {', '.join(stale)} made with other weights; "
                "use another --out or delete those rows from results.csv and provenance.json"
            )
    if not write:
        return
    codecs = {**(previous or {}).get("codecs", {}), **current["codecs"]} if has_rows else current["codecs"]
    atomic_write(path, json.dumps({**current, "codecs": codecs}, indent=2).encode())


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IcmError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise IcmError(f"{path} is not a provenance record")
    return data
