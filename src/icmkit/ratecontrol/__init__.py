"""Rate control: targets (size, fidelity, the machine's decision) searched over any codec's quality knob,
and the adaptive codecs that apply such a search per image inside a benchmark."""

from icmkit.ratecontrol.search import (
    KINDS,
    SearchResult,
    Target,
    TargetError,
    Trial,
    candidates,
    compress_to_target,
    search,
)

__all__ = ["KINDS", "SearchResult", "Target", "TargetError", "Trial", "candidates", "compress_to_target", "search"]
