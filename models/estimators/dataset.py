"""Summaries of one estimator over a data set, built chunk by chunk (evaluation jobs, docs/api.md).

The mean of per-input log p(x) and its standard error over inputs (the spread of the data set, not the
Monte Carlo error of any one input), merged with Chan et al.'s pairwise update so that a summary built from
chunks in any grouping equals the one computed at once; verdict counts; a histogram of k-hat.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["KHAT_EDGES", "DatasetSummary"]

# k-hat bins of width 0.1 from 0 to 1.5, with one bin below and one above; 0.5 and 0.7 (PSIS's thresholds) are edges.
KHAT_EDGES: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(16))


def _khat_bin(value: float) -> int:
    """Index into ``len(KHAT_EDGES) + 1`` bins: 0 below the first edge, i for [edge i-1, edge i), last above."""
    return sum(value >= edge for edge in KHAT_EDGES)


@dataclass
class DatasetSummary:
    """``count`` finite values with their ``mean`` and ``m2`` (sum of squared deviations); ``not_finite``
    values left out of both (an impossible or failed estimate, null in results); verdict ``levels`` counted;
    ``khat`` histogram over ``KHAT_EDGES`` (inputs without a k-hat are not counted)."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    not_finite: int = 0
    levels: dict[str, int] = field(default_factory=lambda: {"reliable": 0, "caution": 0, "unreliable": 0})
    khat: list[int] = field(default_factory=lambda: [0] * (len(KHAT_EDGES) + 1))

    def add(self, values: Iterable[float | None], levels: Iterable[str], khats: Iterable[float | None]) -> None:
        values = list(values)
        finite = [v for v in values if v is not None and math.isfinite(v)]
        self.not_finite += len(values) - len(finite)
        if finite:
            n = len(finite)
            mean = sum(finite) / n
            m2 = sum((v - mean) ** 2 for v in finite)
            total = self.count + n
            delta = mean - self.mean
            self.mean += delta * n / total
            self.m2 += m2 + delta * delta * self.count * n / total
            self.count = total
        for level in levels:
            self.levels[level] = self.levels.get(level, 0) + 1
        for k in khats:
            if k is not None and math.isfinite(k):
                self.khat[_khat_bin(k)] += 1

    @property
    def std_err(self) -> float | None:
        """Standard error of the mean over inputs; None below two finite values."""
        return math.sqrt(self.m2 / (self.count - 1) / self.count) if self.count >= 2 else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "mean": self.mean,
            "m2": self.m2,
            "not_finite": self.not_finite,
            "levels": dict(self.levels),
            "khat": list(self.khat),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DatasetSummary:
        return cls(d["count"], d["mean"], d["m2"], d["not_finite"], dict(d["levels"]), list(d["khat"]))
