"""The receiver's in-memory structures stay bounded: their Python heap size at 1x and 3x their capacity.

Measured with tracemalloc on the receiver's own classes (``RecentEvents``, the dedupe LRU; ``Pending``, the
recent-deliveries list kept per integration until the next status flush).
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from typing import Any

from fluxrate.kube import ObjectRef
from fluxrate.webhook_receiver.dedupe import RecentEvents
from fluxrate.webhook_receiver.deliveries import RECENT_LIMIT, DeliveryRecord, Pending
from fluxrate.webhook_receiver.settings import ReceiverSettings


def _heap_after(build: Callable[[], Any]) -> tuple[Any, int]:
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = build()
        return kept, tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def _dedupe(capacity: int, adds: int) -> RecentEvents:
    recent = RecentEvents(capacity)
    for i in range(adds):
        ref = ObjectRef(kind="Invoice", namespace="tenant-a", name=f"inv-{i % 5000:05d}", uid=f"uid-{i:032d}")
        recent.add("tenant-a", "production-stripe", f"evt_{i:024d}", ref)
    return recent


def _pending(adds: int) -> Pending:
    pending = Pending()
    for i in range(adds):
        pending.add(DeliveryRecord(outcome="ignored", time="2026-11-27T00:00:00Z", event_id=f"evt_{i:024d}",
                                   type="customer.created", reason="fluxrate does not act on customer.created"))
    return pending


def measure_bounds(dedupe_capacity: int | None = None) -> dict[str, Any]:
    capacity = dedupe_capacity or ReceiverSettings().dedupe_size
    full, full_bytes = _heap_after(lambda: _dedupe(capacity, capacity))
    over, over_bytes = _heap_after(lambda: _dedupe(capacity, 3 * capacity))
    p_full, p_full_bytes = _heap_after(lambda: _pending(RECENT_LIMIT))
    p_over, p_over_bytes = _heap_after(lambda: _pending(100 * RECENT_LIMIT))
    return {
        "dedupe": {"capacity": capacity, "entries_after_1x": len(full), "entries_after_3x": len(over),
                   "heap_mib_after_1x": round(full_bytes / 2**20, 2),
                   "heap_mib_after_3x": round(over_bytes / 2**20, 2)},
        "pending_recent": {"limit": RECENT_LIMIT, "entries_after_1x": len(p_full.recent),
                           "entries_after_100x": len(p_over.recent), "heap_kib_after_1x": round(p_full_bytes / 1024, 1),
                           "heap_kib_after_100x": round(p_over_bytes / 1024, 1)},
    }
