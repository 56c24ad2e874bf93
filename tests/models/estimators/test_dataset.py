"""Data-set summaries built chunk by chunk equal those computed at once, against float64 numpy."""

from __future__ import annotations

import itertools
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from logpx.estimators import KHAT_EDGES, DatasetSummary


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.floats(-1e3, 1e3), min_size=0, max_size=60),
    cuts=st.lists(st.integers(0, 60), max_size=5),
)
def test_chunked_equals_at_once(values: list[float], cuts: list[int]) -> None:
    summary = DatasetSummary()
    bounds = sorted({0, len(values), *[c for c in cuts if c <= len(values)]})
    for a, b in itertools.pairwise(bounds):
        summary.add(values[a:b], ["reliable"] * (b - a), [None] * (b - a))
    assert summary.count == len(values)
    if values:
        assert math.isclose(summary.mean, float(np.mean(values)), rel_tol=1e-12, abs_tol=1e-9)
    if len(values) >= 2:
        want = float(np.std(values, ddof=1) / math.sqrt(len(values)))
        assert summary.std_err is not None and math.isclose(summary.std_err, want, rel_tol=1e-9, abs_tol=1e-9)
    else:
        assert summary.std_err is None


def test_non_finite_values_levels_and_khat_bins() -> None:
    s = DatasetSummary()
    s.add(
        [-90.0, None, float("nan"), -92.0], ["reliable", "unreliable", "unreliable", "caution"], [0.05, 0.5, 0.71, 9.0]
    )
    s.add([], [], [None, -0.3])
    assert (s.count, s.not_finite, s.mean) == (2, 2, -91.0)
    assert s.levels == {"reliable": 1, "caution": 1, "unreliable": 2}
    assert s.khat[0] == 1  # -0.3: below the first edge
    assert s.khat[1] == 1  # 0.05 in [0, 0.1)
    assert s.khat[KHAT_EDGES.index(0.5) + 1] == 1 and s.khat[KHAT_EDGES.index(0.7) + 1] == 1
    assert s.khat[-1] == 1  # 9.0: above the last edge
    assert DatasetSummary.from_dict(s.to_dict()) == s
