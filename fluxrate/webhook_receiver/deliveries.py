"""What each delivery did, kept in ``StripeIntegration.status.deliveries`` (the guide's "Webhook Events" page).

Deliveries are accumulated in memory per integration and flushed every few seconds with a resourceVersion-guarded
read-modify-write that *adds* the accumulated counts to the stored ones, so replicas never overwrite each other.
Only ``status.deliveries`` is written, plus the ``WebhookApiVersion`` condition when the API versions seen call for
another one (the operator recomputes the same condition from ``deliveries.apiVersions`` on every reconcile, so
neither writer loses the other's); the operator owns the rest of the status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from fluxrate import api_versions
from fluxrate import conditions as cond
from fluxrate.kube import Kube
from fluxrate.webhook_receiver.metrics import OUTCOMES
from fluxrate.webhook_receiver.secrets_cache import PLURAL, TRANSIENT_ERRORS

log = logging.getLogger(__name__)

RECENT_LIMIT = 50
MAX_PENDING_INTEGRATIONS = 5000  # bounds memory when the API is down and traffic names unknown integrations
REASON_LIMIT = 300


@dataclass(frozen=True)
class DeliveryRecord:
    outcome: str
    time: str  # RFC 3339
    event_id: str | None = None
    type: str | None = None
    invoice: str | None = None
    reason: str | None = None
    api_version: str | None = None

    def to_status(self) -> dict[str, Any]:
        item: dict[str, Any] = {"outcome": self.outcome, "time": self.time}
        for key, value in (("eventId", self.event_id), ("type", self.type), ("invoice", self.invoice),
                           ("apiVersion", self.api_version[:api_versions.VERSION_MAX_LENGTH]
                            if self.api_version else None),
                           ("reason", self.reason[:REASON_LIMIT] if self.reason else None)):
            if value:
                item[key] = value
        return item


@dataclass
class Pending:
    counts: dict[str, int] = field(default_factory=dict)
    recent: deque[DeliveryRecord] = field(default_factory=lambda: deque(maxlen=RECENT_LIMIT))  # oldest first
    versions: dict[str, tuple[int, str]] = field(default_factory=dict)  # API version -> (count, last time)

    def add(self, record: DeliveryRecord) -> None:
        self.counts[record.outcome] = self.counts.get(record.outcome, 0) + 1
        self.recent.append(record)
        if record.api_version:
            self._saw(record.api_version, 1, record.time)

    def _saw(self, version: str, count: int, time: str) -> None:
        if version not in self.versions and len(self.versions) >= api_versions.API_VERSIONS_LIMIT:
            return  # forged traffic cannot grow it: only verified events carry a version, and few versions exist
        seen, last = self.versions.get(version, (0, time))
        self.versions[version] = (seen + count, max(last, time))

    def absorb(self, older: Pending) -> None:
        """Put back a batch that could not be written, in front of what arrived since."""
        for outcome, count in older.counts.items():
            self.counts[outcome] = self.counts.get(outcome, 0) + count
        self.recent = deque([*older.recent, *self.recent], maxlen=RECENT_LIMIT)
        for version, (count, time) in older.versions.items():
            self._saw(version, count, time)


def merge_deliveries(stored: Mapping[str, Any] | None, pending: Pending) -> dict[str, Any]:
    """The new ``status.deliveries``: stored counts plus pending ones, newest deliveries first, bounded."""
    stored = stored or {}
    stored_counts = stored.get("counts") or {}
    counts = {outcome: int(stored_counts.get(outcome) or 0) + pending.counts.get(outcome, 0) for outcome in OUTCOMES}
    newest_first = [r.to_status() for r in reversed(pending.recent)]
    recent = [*newest_first, *(stored.get("recent") or [])][:RECENT_LIMIT]
    times = [t for t in (stored.get("lastDeliveryTime"), *(r.time for r in pending.recent)) if t]
    result: dict[str, Any] = {"counts": counts, "recent": recent}
    if times:
        result["lastDeliveryTime"] = max(times)
    versions = api_versions.merge_seen(stored.get("apiVersions"), pending.versions)
    if versions:
        result["apiVersions"] = versions
    return result


def api_version_condition(obj: Mapping[str, Any], deliveries: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The integration's conditions with ``WebhookApiVersion`` updated, or None when it is already as it should be."""
    status = obj.get("status") or {}
    managed = bool(((obj.get("spec") or {}).get("webhookEndpoint") or {}).get("managed"))
    wanted = api_versions.condition(deliveries.get("apiVersions"), managed=managed, url=status.get("webhookURL"))
    if wanted is None:
        return None
    current = cond.get(status.get("conditions"), wanted.type) or {}
    if (current.get("status"), current.get("reason"), current.get("message")) == (
            wanted.status, wanted.reason, wanted.message):
        return None
    return cond.merge(status.get("conditions"), [wanted], generation=None)


class DeliveryRecorder:
    def __init__(self, kube: Kube, *, interval: float, attempts: int = 5) -> None:
        self.kube = kube
        self.interval = interval
        self.attempts = attempts
        self.flush_failures = 0
        self.dropped = 0
        self._pending: dict[tuple[str, str], Pending] = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def record(self, namespace: str, integration: str, record: DeliveryRecord) -> None:
        key = (namespace, integration)
        if key not in self._pending and len(self._pending) >= MAX_PENDING_INTEGRATIONS:
            self.dropped += 1
            return
        self._pending.setdefault(key, Pending()).add(record)

    @property
    def pending(self) -> int:
        return sum(sum(p.counts.values()) for p in self._pending.values())

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="fluxrate-receiver-status-flush")

    async def stop(self) -> None:
        """Stop the periodic flush and write what is left (best effort: the API may be down)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.flush()
            except Exception:  # the loop must survive anything; the next flush retries
                log.exception("flushing delivery status failed")

    async def flush(self) -> None:
        """Write every integration's pending deliveries; what fails stays pending for the next flush."""
        async with self._lock:
            batches, self._pending = self._pending, {}
            for key, batch in batches.items():
                if not await self._write(key, batch):
                    self.flush_failures += 1
                    self._pending.setdefault(key, Pending()).absorb(batch)

    async def _write(self, key: tuple[str, str], batch: Pending) -> bool:
        namespace, name = key
        for attempt in range(self.attempts):
            try:
                obj = await self.kube.get_object(PLURAL, namespace, name)
                if obj is None:
                    return True  # the integration is gone: nothing to keep its deliveries on
                deliveries = merge_deliveries((obj.get("status") or {}).get("deliveries"), batch)
                patch: dict[str, Any] = {"deliveries": deliveries}
                conditions = api_version_condition(obj, deliveries)
                if conditions is not None:
                    patch["conditions"] = conditions
                await self.kube.patch_status(PLURAL, namespace, name, patch,
                                             resource_version=obj["metadata"]["resourceVersion"])
                return True
            except ApiException as exc:
                if exc.status == 404:
                    return True
                if exc.status != 409:
                    log.warning("writing deliveries of %s/%s failed: HTTP %s", namespace, name, exc.status)
                    return False
            except TRANSIENT_ERRORS as exc:
                log.warning("writing deliveries of %s/%s failed: %s", namespace, name, type(exc).__name__)
                return False
            await asyncio.sleep(min(0.02 * 2**attempt, 0.5))
        return False
