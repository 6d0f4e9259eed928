"""A bounded memory of event ids this replica applied: redeliveries are answered without a Kubernetes request.

Across replicas and restarts the invoice's ``status.processedEvents`` is the authority; this is the fast path.
"""

from __future__ import annotations

from collections import OrderedDict

from fluxrate.kube import ObjectRef


class RecentEvents:
    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._seen: OrderedDict[tuple[str, str, str], ObjectRef | None] = OrderedDict()

    def get(self, namespace: str, integration: str, event_id: str) -> tuple[bool, ObjectRef | None]:
        """(seen, the invoice it was applied to)."""
        key = (namespace, integration, event_id)
        if key not in self._seen:
            return False, None
        self._seen.move_to_end(key)
        return True, self._seen[key]

    def add(self, namespace: str, integration: str, event_id: str, invoice: ObjectRef | None) -> None:
        key = (namespace, integration, event_id)
        self._seen[key] = invoice
        self._seen.move_to_end(key)
        while len(self._seen) > self.capacity:
            self._seen.popitem(last=False)

    def __len__(self) -> int:
        return len(self._seen)
