"""Signed Stripe webhook deliveries, built before the clock starts, as the load generator's requests."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import stripe

from bench.tenant import OpenInvoice


@dataclass(frozen=True)
class Delivery:
    body: str
    signature: str
    expected: str  # the outcome the receiver should answer


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


def as_requests(path: str, items: Sequence[Delivery]) -> list[dict[str, Any]]:
    """Deliveries as the load generator's requests (``bench.loadgen``)."""
    return [{"method": "POST", "path": path, "body": item.body, "expect": item.expected,
             "headers": {"Content-Type": "application/json", "Stripe-Signature": item.signature}} for item in items]
