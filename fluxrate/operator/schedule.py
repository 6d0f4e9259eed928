"""Invoices due for reconciliation (missed webhooks, unfinished deactivations), kept from the invoices' watch events
and run by one daemon per StripeIntegration.

A kopf timer on invoices did this before, but any timer or daemon on a resource makes kopf keep the last body of
every object of that resource for the life of the process, even of those whose ``when`` filter never matches:
with 10,000 invoices, mostly Paid, that was about 60 MiB. Only the invoices that need it are kept here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

Key = tuple[str, str]  # (namespace, integration name)


def needs_reconciliation(status: Mapping[str, Any]) -> bool:
    """Open (a webhook may be missed, a link deactivated in Stripe), or Paid with a link (the current one or a
    replaced one) still active (its deactivation failed)."""
    links = [*(status.get("paymentLinks") or []), status.get("paymentLink") or {}]
    active = any(isinstance(link, Mapping) and link.get("active") is True for link in links)
    return status.get("phase") == "Open" or (status.get("phase") == "Paid" and active)


def integration_of(body: Mapping[str, Any]) -> str:
    return str(((body.get("spec") or {}).get("integrationRef") or {}).get("name", ""))


@dataclass
class Due:
    at: float  # loop time
    body: Mapping[str, Any]  # the newest version seen


class ReconcileSchedule:
    """When each invoice that needs reconciliation is next due, filed under the integration it references."""

    def __init__(self) -> None:
        self._by_integration: dict[Key, dict[str, Due]] = {}
        self._keys: dict[Key, Key] = {}  # (namespace, invoice) -> the key it is filed under
        self._changed: dict[Key, asyncio.Event] = {}

    def update(self, namespace: str, name: str, body: Mapping[str, Any] | None, first_at: float) -> None:
        """Keep ``body`` as the invoice's newest version, due at ``first_at`` if it was not scheduled yet; or drop
        the invoice (``body`` None: deleted, being deleted, or needing no reconciliation)."""
        key = None if body is None else (namespace, integration_of(body))
        previous = self._keys.get((namespace, name))
        moved = self._remove(namespace, name, previous) if previous is not None and previous != key else None
        if body is None or key is None:
            return
        entries = self._by_integration.setdefault(key, {})
        current = entries.get(name) or moved
        entries[name] = Due(current.at if current is not None else first_at, body)
        self._keys[(namespace, name)] = key
        if current is None:
            self._wake(key)

    def drop(self, namespace: str, name: str) -> None:
        previous = self._keys.get((namespace, name))
        if previous is not None:
            self._remove(namespace, name, previous)

    def _remove(self, namespace: str, name: str, key: Key) -> Due | None:
        del self._keys[(namespace, name)]
        entries = self._by_integration.get(key, {})
        due = entries.pop(name, None)
        if not entries:
            self._by_integration.pop(key, None)
        return due

    def _wake(self, key: Key) -> None:
        event = self._changed.get(key)
        if event is not None:
            event.set()

    def names(self, namespace: str, integration: str) -> frozenset[str]:
        return frozenset(self._by_integration.get((namespace, integration), ()))

    def take_due(self, namespace: str, integration: str, now: float) -> list[Mapping[str, Any]]:
        """The bodies of the invoices due at ``now``; they are not due again until ``reschedule``."""
        entries = self._by_integration.get((namespace, integration), {})
        taken = []
        for due in entries.values():
            if due.at <= now:
                due.at = float("inf")
                taken.append(due.body)
        return taken

    def reschedule(self, namespace: str, name: str, at: float) -> None:
        key = self._keys.get((namespace, name))
        due = self._by_integration[key].get(name) if key is not None else None
        if due is not None:
            due.at = at

    def next_at(self, namespace: str, integration: str) -> float:
        return min((d.at for d in self._by_integration.get((namespace, integration), {}).values()),
                   default=float("inf"))

    @contextlib.contextmanager
    def watching(self, namespace: str, integration: str) -> Any:
        """An event set whenever an invoice is newly filed under the integration (for the daemon's sleeps)."""
        event = self._changed[(namespace, integration)] = asyncio.Event()
        try:
            yield event
        finally:
            if self._changed.get((namespace, integration)) is event:
                del self._changed[(namespace, integration)]


class KeyedLocks:
    """One asyncio.Lock per key while anyone holds or waits for it; forgotten after (not one per invoice ever)."""

    def __init__(self) -> None:
        self._locks: dict[tuple[str, ...], tuple[asyncio.Lock, list[int]]] = {}

    def __len__(self) -> int:
        return len(self._locks)

    @contextlib.asynccontextmanager
    async def __call__(self, *key: str) -> AsyncIterator[None]:
        lock, users = self._locks.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._locks[key]
