"""One Stripe client and one client-side rate limiter per StripeIntegration, built from its verified key."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import stripe
from aiolimiter import AsyncLimiter

from fluxrate.operator.stripe_budget import Priority, PriorityGate
from fluxrate.stripe_api import build_stripe_client, close_stripe_client
from fluxrate.stripe_keys import Mode, SecretKey

if TYPE_CHECKING:
    from fluxrate.models import StripeIntegrationSpec

T = TypeVar("T")
Key = tuple[str, str]  # (namespace, integration name)
# Told how each request ended: the exception it raised, None when it succeeded (BillingMetrics counts them).
Observer = Callable[[BaseException | None], None]


@dataclass
class IntegrationClient:
    client: stripe.StripeClient
    limiter: AsyncLimiter
    mode: Mode
    fingerprint: str
    account_id: str | None = None
    ready: bool = False
    active: bool = True
    observe: Observer | None = None
    # The integration's spec as its last reconcile saw it (set with ``ready`` and ``active``): link creation
    # reads the after-completion settings here instead of reading the StripeIntegration for every invoice.
    spec: StripeIntegrationSpec | None = None
    gate: PriorityGate = field(init=False)

    def __post_init__(self) -> None:
        self.gate = PriorityGate(self.limiter)

    async def call(self, request: Callable[[stripe.StripeClient], Awaitable[T]], *,
                   priority: Priority = Priority.BACKGROUND) -> T:
        """Every request to Stripe goes through the integration's limiter, so bursts never hit Stripe's 429, in
        ``priority`` order (``stripe_budget``: links before background work); its outcome goes to ``observe``
        (the ``fluxrate_stripe_requests_total`` counter)."""
        await self.gate.acquire(priority)
        try:
            result = await request(self.client)
        except Exception as exc:  # not a cancellation: that is no answer from Stripe
            if self.observe is not None:
                self.observe(exc)
            raise
        if self.observe is not None:
            self.observe(None)
        return result


def _fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass
class StripeClients:
    api_base: str | None
    max_network_retries: int
    rate_limit_test: float
    rate_limit_live: float
    observe: Observer | None = None
    _entries: dict[Key, IntegrationClient] = field(default_factory=dict)

    def get(self, namespace: str, name: str) -> IntegrationClient | None:
        return self._entries.get((namespace, name))

    async def for_key(self, namespace: str, name: str, key: SecretKey) -> tuple[IntegrationClient, bool]:
        """The client for ``key``; the flag says the key differs from the one used before (a rotation)."""
        fingerprint = _fingerprint(key.value)
        current = self._entries.get((namespace, name))
        if current is not None and current.fingerprint == fingerprint:
            return current, False
        rate = self.rate_limit_live if key.mode == "live" else self.rate_limit_test
        entry = IntegrationClient(
            client=build_stripe_client(key.value, api_base=self.api_base, max_network_retries=self.max_network_retries),
            # Spread the per-second budget evenly instead of allowing a full second's burst at once.
            limiter=AsyncLimiter(max(1.0, rate / 5), 0.2),
            mode=key.mode,
            fingerprint=fingerprint,
            observe=self.observe,
        )
        if current is not None:
            entry.account_id, entry.ready, entry.active = current.account_id, current.ready, current.active
            entry.spec = current.spec
        return entry, current is not None

    def adopt(self, namespace: str, name: str, entry: IntegrationClient) -> IntegrationClient | None:
        """Make ``entry`` the integration's client; returns the replaced one for closing."""
        previous = self._entries.get((namespace, name))
        self._entries[(namespace, name)] = entry
        return previous if previous is not entry else None

    async def forget(self, namespace: str, name: str) -> None:
        entry = self._entries.pop((namespace, name), None)
        if entry is not None:
            await close_stripe_client(entry.client)

    async def close(self) -> None:
        for entry in self._entries.values():
            await close_stripe_client(entry.client)
        self._entries.clear()
