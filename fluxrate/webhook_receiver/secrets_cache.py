"""Integration settings and signing secrets, cached so a steady stream of deliveries reads nothing from Kubernetes.

Entries live ``ttl`` seconds (unknown integrations ``negative_ttl``); concurrent lookups of one integration share
one load. A signature miss may force a refresh (``refresh_after_miss``) so a rotated secret verifies on its first
delivery; forced refreshes are rate-limited per integration so hostile traffic cannot turn into API load.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from kubernetes_asyncio.client.exceptions import ApiException

from fluxrate.kube import Kube, ObjectRef
from fluxrate.stripe_keys import MANAGED_SIGNING_SECRET_KEY, KeyProblem, parse_webhook_secrets

log = logging.getLogger(__name__)

PLURAL = "stripeintegrations"
TRANSIENT_ERRORS = (ApiException, aiohttp.ClientError, TimeoutError, OSError)


class KubeUnavailable(Exception):
    """The Kubernetes API could not be read and nothing usable is cached."""


@dataclass(frozen=True)
class IntegrationInfo:
    ref: ObjectRef
    mode: str | None  # live | test, from status (None until the operator verified the key)
    active: bool
    secrets: tuple[str, ...] = field(repr=False)
    secret_problem: str | None = None  # why there are no secrets (safe to log: names, never values)

    def __repr__(self) -> str:  # never show the secrets
        return f"IntegrationInfo({self.ref.namespace}/{self.ref.name}, mode={self.mode}, secrets={len(self.secrets)})"


def secret_location(obj: Mapping[str, Any]) -> tuple[str, str] | None:
    """(Secret name, key) holding the signing secrets of an integration object, if it says."""
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    if (spec.get("webhookEndpoint") or {}).get("managed"):
        name = status.get("webhookSecretName")
        return (name, MANAGED_SIGNING_SECRET_KEY) if name else None
    ref = spec.get("webhookSecretRef") or {}
    return (ref["name"], ref["key"]) if ref.get("name") and ref.get("key") else None


def info_from(obj: Mapping[str, Any], secret_data: Mapping[str, str] | None, location: tuple[str, str] | None
              ) -> IntegrationInfo:
    meta = obj["metadata"]
    ref = ObjectRef(kind="StripeIntegration", namespace=meta["namespace"], name=meta["name"], uid=meta.get("uid"))
    status = obj.get("status") or {}
    active = (obj.get("spec") or {}).get("active", True) is not False
    if location is None:
        return IntegrationInfo(ref, status.get("mode"), active, (), "no webhook signing secret is configured")
    where = f'Secret "{location[0]}" key "{location[1]}"'
    raw = (secret_data or {}).get(location[1])
    if raw is None:
        return IntegrationInfo(ref, status.get("mode"), active, (), f"{where} does not exist")
    try:
        secrets = parse_webhook_secrets(raw, where)
    except KeyProblem as exc:
        return IntegrationInfo(ref, status.get("mode"), active, (), str(exc))
    return IntegrationInfo(ref, status.get("mode"), active, secrets)


@dataclass
class _Entry:
    info: IntegrationInfo | None
    fetched_at: float  # clock value when the load that produced it started


@dataclass
class _Bucket:
    tokens: float
    updated: float

    def take(self, now: float, rate: float, burst: float) -> bool:
        self.tokens = min(burst, self.tokens + (now - self.updated) * rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


Key = tuple[str, str]


class IntegrationCache:
    def __init__(
        self, kube: Kube, *, ttl: float, negative_ttl: float = 5.0, max_entries: int = 1024,
        forced_refresh_rate: float = 1.0, forced_refresh_burst: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube = kube
        self.ttl = ttl
        self.negative_ttl = min(negative_ttl, ttl)
        self.max_entries = max_entries
        self.forced_refresh_rate = forced_refresh_rate
        self.forced_refresh_burst = forced_refresh_burst
        self.clock = clock
        self.loads = 0  # Kubernetes loads done (each one is two reads at most)
        self._entries: OrderedDict[Key, _Entry] = OrderedDict()
        self._inflight: dict[Key, tuple[float, asyncio.Task[IntegrationInfo | None]]] = {}
        self._buckets: dict[Key, _Bucket] = {}

    async def get(self, namespace: str, name: str) -> IntegrationInfo | None:
        """The integration (None: it does not exist). Raises ``KubeUnavailable`` when it cannot be known."""
        key = (namespace, name)
        entry = self._entries.get(key)
        now = self.clock()
        if entry is not None:
            fresh_for = self.ttl if entry.info is not None else self.negative_ttl
            if now - entry.fetched_at < fresh_for:
                self._entries.move_to_end(key)
                return entry.info
        try:
            return await self._load(key)
        except KubeUnavailable:
            if entry is not None and entry.info is not None:
                log.warning("Kubernetes API unavailable; using cached settings of %s/%s", namespace, name)
                return entry.info
            raise

    async def refresh_after_miss(self, namespace: str, name: str, since: float) -> IntegrationInfo | None:
        """Fresh settings after a signature miss of a request that arrived at ``since`` (clock value).

        Reuses a load that started after ``since``; otherwise loads again if the per-integration budget allows.
        Returns None when no fresher settings can be had (budget spent or the API unavailable).
        """
        key = (namespace, name)
        entry = self._entries.get(key)
        if entry is not None and entry.fetched_at >= since:
            return entry.info
        inflight = self._inflight.get(key)
        if inflight is None or inflight[0] < since:
            now = self.clock()
            bucket = self._buckets.setdefault(key, _Bucket(self.forced_refresh_burst, now))
            if not bucket.take(now, self.forced_refresh_rate, self.forced_refresh_burst):
                return None
        try:
            return await self._load(key, not_before=since)
        except KubeUnavailable:
            return None

    def invalidate(self, namespace: str, name: str) -> None:
        self._entries.pop((namespace, name), None)

    async def _load(self, key: Key, not_before: float | None = None) -> IntegrationInfo | None:
        inflight = self._inflight.get(key)
        if inflight is None or (not_before is not None and inflight[0] < not_before):
            started = self.clock()
            task = asyncio.get_running_loop().create_task(self._fetch(key, started))
            inflight = (started, task)
            self._inflight[key] = inflight
            task.add_done_callback(lambda _t, k=key, i=inflight: self._done(k, i))
        return await asyncio.shield(inflight[1])

    def _done(self, key: Key, inflight: tuple[float, asyncio.Task[IntegrationInfo | None]]) -> None:
        if self._inflight.get(key) is inflight:
            del self._inflight[key]
        if not inflight[1].cancelled():
            inflight[1].exception()  # mark it retrieved; the callers see it through their shield

    async def _fetch(self, key: Key, started: float) -> IntegrationInfo | None:
        namespace, name = key
        self.loads += 1
        try:
            obj = await self.kube.get_object(PLURAL, namespace, name)
            info: IntegrationInfo | None = None
            if obj is not None:
                location = secret_location(obj)
                data = await self.kube.read_secret(namespace, location[0]) if location else None
                info = info_from(obj, data, location)
        except TRANSIENT_ERRORS as exc:
            status = getattr(exc, "status", None)
            raise KubeUnavailable(f"reading {namespace}/{name}: {type(exc).__name__} {status or ''}".strip()) from None
        current = self._entries.get(key)
        if current is None or current.fetched_at <= started:
            self._entries[key] = _Entry(info, started)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return info
