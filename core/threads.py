"""torch's intra-op thread count for a block of work, the caller's count restored after.

Work whose figures must not depend on the process it runs in pins the count: a fine-tune's weights differ in their
last bits between thread counts (sums split across threads round differently), and a latency is measured at the
thread count it reports."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch on `threads` intra-op threads inside the block; what the caller had, after (also on an exception)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
