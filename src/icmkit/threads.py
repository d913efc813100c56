"""Torch intra-op thread control shared by the decoders, the metrics and the process pools."""

from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def single_threaded():
    """Run the enclosed torch ops on one intra-op thread, restoring the setting afterwards.

    Why, for decoders: float32 convolutions split their work by thread count, so sums round differently
    with 1 or 2 threads (seen: one pixel in 60,000 off by one after rounding); decoders synthesise under
    this context so decoded pixels do not depend on torch's thread setting or on batching. For small
    per-image metrics: a second thread only adds synchronisation, and on a busy machine its spin-waits
    made a 256² MS-SSIM 40× slower.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def one_thread_worker() -> None:
    """Initialiser of a process pool's workers: one process per core, one torch thread each (more threads per
    worker only oversubscribe the cores)."""
    torch.set_num_threads(1)
