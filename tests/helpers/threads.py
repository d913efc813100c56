"""Running one call at several torch thread counts (for the tests of thread-independent results)."""

from __future__ import annotations

from collections.abc import Callable

import torch


def at_thread_counts(call: Callable[[], torch.Tensor], counts=(1, 2)) -> list[torch.Tensor]:
    """``call()``'s result with torch set to each of ``counts`` threads in turn; the thread count is restored."""
    threads = torch.get_num_threads()
    results = []
    try:
        for count in counts:
            torch.set_num_threads(count)
            results.append(call())
    finally:
        torch.set_num_threads(threads)
    return results
