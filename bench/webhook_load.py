"""Signed Stripe webhook deliveries and a concurrent HTTP load driver (aiohttp, keep-alive, loopback only)."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import stripe

from bench.stats import latency_summary
from bench.tenant import OpenInvoice


@dataclass(frozen=True)
class Delivery:
    body: str
    signature: str
    expected: str  # the outcome the receiver should answer


@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    unexpected: int = 0
    wall: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {**latency_summary(self.latencies, self.wall), "outcomes": dict(self.outcomes),
                "statuses": {str(k): v for k, v in self.statuses.items()}, "unexpected": self.unexpected}


def event(type_: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {"id": "evt_bench" + secrets.token_hex(10), "object": "event", "api_version": "2024-06-20",
            "created": int(time.time()), "livemode": False, "type": type_, "data": {"object": obj},
            "pending_webhooks": 1, "request": {"id": None, "idempotency_key": None}}


def paid_session_event(invoice: OpenInvoice) -> dict[str, Any]:
    """``checkout.session.completed`` for a paid session of the invoice's link, as Stripe sends it."""
    return event("checkout.session.completed", {
        "id": "cs_test_bench" + secrets.token_hex(8), "object": "checkout.session", "amount_total": 23650,
        "currency": "usd", "livemode": False, "metadata": dict(invoice.metadata),
        "payment_intent": "pi_bench" + secrets.token_hex(8), "payment_status": "paid", "status": "complete",
    })


def ignored_event(index: int) -> dict[str, Any]:
    """Alternately an event type fluxrate does not act on (ignored) and a handled one without fluxrate's
    metadata (unmatched): both are answered from the cached integration, without a Kubernetes read."""
    if index % 2 == 0:
        return event("customer.created", {"id": "cus_bench" + secrets.token_hex(6), "object": "customer"})
    return event("checkout.session.completed", {
        "id": "cs_test_bench" + secrets.token_hex(8), "object": "checkout.session", "amount_total": 1000,
        "currency": "usd", "livemode": False, "metadata": {}, "payment_status": "paid", "status": "complete",
    })


def sign(body: str, secret: str) -> str:
    return stripe.WebhookSignature.generate_signature_header(body, secret)


def deliveries(events: Sequence[dict[str, Any]], secret: str, expected: str | Sequence[str]) -> list[Delivery]:
    """Serialize and sign (before any timing starts)."""
    out = []
    for i, ev in enumerate(events):
        body = json.dumps(ev)
        want = expected if isinstance(expected, str) else expected[i % len(expected)]
        out.append(Delivery(body, sign(body, secret), want))
    return out


def forged(count: int) -> list[Delivery]:
    """Well-formed events signed with a secret the receiver does not have: hostile traffic."""
    wrong = "whsec_" + secrets.token_hex(16)
    return deliveries([ignored_event(i) for i in range(count)], wrong, "signature_failed")


async def drive(url: str, items: Sequence[Delivery], concurrency: int, time_budget: float) -> LoadResult:
    """POST ``items`` with ``concurrency`` workers (one keep-alive connection each); stops early at the budget."""
    result = LoadResult()
    next_index = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + time_budget
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def worker() -> None:
            nonlocal next_index
            while next_index < len(items) and loop.time() < deadline:
                item = items[next_index]
                next_index += 1
                headers = {"Content-Type": "application/json", "Stripe-Signature": item.signature}
                started = time.perf_counter()
                async with http.post(url, data=item.body.encode(), headers=headers) as resp:
                    answer = await resp.json(content_type=None)
                result.latencies.append(time.perf_counter() - started)
                result.statuses[resp.status] += 1
                outcome = answer.get("outcome", "?") if isinstance(answer, dict) else "?"
                result.outcomes[outcome] += 1
                result.unexpected += outcome != item.expected

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.wall = time.perf_counter() - started
    return result


def as_requests(path: str, items: Sequence[Delivery]) -> list[dict[str, Any]]:
    """Deliveries as the load generator's requests (``bench.loadgen``)."""
    return [{"method": "POST", "path": path, "body": item.body, "expect": item.expected,
             "headers": {"Content-Type": "application/json", "Stripe-Signature": item.signature}} for item in items]
