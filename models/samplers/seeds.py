"""Independent random streams from one seed, keyed by position: a job's chunks, a certification's trials.

A stream's draws depend on its (seed, keys) alone, never on how many streams ran before it or where, so
work resumed after a restart, or spread over replicas and Ray workers, draws exactly what an uninterrupted
run would have, and a finished piece (a job's chunk, a certification's trial) can be reused as it stands.
"""

from __future__ import annotations

import numpy as np

__all__ = ["stream_seed"]


def stream_seed(seed: int, *keys: int) -> int:
    """A ``torch.Generator`` seed for the stream ``keys`` of ``seed``: numpy's SeedSequence mixes them, so
    that neighbouring keys give unrelated streams (seeds ``seed + key`` would overlap other requests')."""
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1, np.uint64)[0] >> 1)
