"""Latency summaries: percentiles of per-request durations and the throughput of a timed run."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of already sorted values; NaN when empty."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def latency_summary(seconds: Sequence[float], wall: float) -> dict[str, Any]:
    """p50/p95/p99/max in milliseconds and requests per second over ``wall`` seconds."""
    values = sorted(seconds)
    return {
        "count": len(values),
        "wall_s": round(wall, 3),
        "per_s": round(len(values) / wall, 1) if wall > 0 else None,
        "p50_ms": round(percentile(values, 50) * 1000, 2),
        "p95_ms": round(percentile(values, 95) * 1000, 2),
        "p99_ms": round(percentile(values, 99) * 1000, 2),
        "max_ms": round(values[-1] * 1000, 2) if values else None,
    }
