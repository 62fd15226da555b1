"""What the benchmarks report: `percentile` (p50, p95, p99 of latencies) and `best_of` (a run's
best wall time)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")

__all__ = ["best_of", "percentile"]


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank `q`th percentile (q in 0..100): the smallest value that at least q% of the
    values are at or below, `sorted(values)[ceil(q/100 * n) - 1]` (the first value for q=0); NaN
    when there are no values.

    Nearest rank, rather than interpolation between neighbours: every percentile reported is a
    latency that was really measured, p100 is the maximum, and a small sample gives no value that
    none of its calls had.
    """
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = math.ceil(q * len(ordered) / 100)  # q * n first: 95 * 20 / 100 is exact, 0.95 * 20 is not
    return ordered[min(max(rank, 1), len(ordered)) - 1]


def best_of(rounds: int, fn: Callable[[], T]) -> tuple[float, T]:
    """(the shortest of `rounds` runs of `fn` in seconds, the last run's result): the best run is
    the one least disturbed by the rest of the machine."""
    times: list[float] = []
    for _ in range(rounds):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result
