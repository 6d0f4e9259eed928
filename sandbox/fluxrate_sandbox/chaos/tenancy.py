"""Scenarios 7 and 8: signatures that are valid for the wrong tenant, and valid events replayed."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from typing import Any

from fluxrate_sandbox.chaos.hostile import TOLERANCE_S, sign_bytes
from fluxrate_sandbox.chaos.outcome import Outcome, Size
from fluxrate_sandbox.chaos.stack import Obj, Stack, Tenant, payment_projection


def paid_session(stack: Stack, invoice: Obj) -> dict[str, Any]:
    """The Checkout Session object Stripe sends when the invoice's link is paid (ids made up, never paid)."""
    link = stack.sandbox.stripe.payment_links[invoice["status"]["paymentLink"]["id"]].obj
    suffix = f"{random.getrandbits(64):016x}"
    return {"id": f"cs_test_{suffix}", "object": "checkout.session", "amount_total": 23650, "currency": "usd",
            "livemode": False, "metadata": dict(link["metadata"]), "payment_intent": f"pi_{suffix}",
            "payment_link": link["id"], "payment_status": "paid", "status": "complete"}


def event_for(stack: Stack, tenant: Tenant, obj: dict[str, Any]) -> bytes:
    event = stack.sandbox.stripe.make_event("checkout.session.completed", obj, account_id=tenant.account_id)
    return json.dumps(event, indent=2).encode()


async def deliver(stack: Stack, url: str, body: bytes, secret: str, timestamp: int | None = None) -> tuple[int, str]:
    ts = int(time.time()) if timestamp is None else timestamp
    status, text = await stack.post(url, body, {"Content-Type": "application/json",
                                                "Stripe-Signature": sign_bytes(body, secret, ts)})
    try:
        outcome = json.loads(text).get("outcome", "?")
    except (ValueError, AttributeError):
        outcome = "?"
    return status or 0, outcome


def status_of(stack: Stack, key: tuple[str, str]) -> str:
    return json.dumps(stack.invoice(*key).get("status") or {}, sort_keys=True)


async def cross_tenant(stack: Stack, size: Size, rng: random.Random, outcome: Outcome) -> None:
    a, b = await stack.tenant("chaos-tenant-a"), await stack.tenant("chaos-tenant-b")
    count = size.n(20, minimum=4)
    b_invoices = await stack.open_invoices(b, count)
    a_invoices = await stack.open_invoices(a, count)  # same names as B's, other uids
    a_secret = stack.signing_secrets(a)[0]
    watched = [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in [*a_invoices, *b_invoices]]
    # Their whole status, not their resourceVersion: kopf may still be writing its own annotations after an
    # invoice turned Open and emailed, and that is not a change a delivery made.
    before = {key: status_of(stack, key) for key in watched}
    results: dict[str, Counter[str]] = {}
    cases = {
        "A-signed, B's invoice, to A's URL": lambda body: deliver(stack, a.webhook_url, body, a_secret),
        "A-signed, B's invoice, to B's URL": lambda body: deliver(stack, b.webhook_url, body, a_secret),
    }
    for invoice in b_invoices:
        body = event_for(stack, a, paid_session(stack, invoice))
        for case, send in cases.items():
            status, answer = await send(body)
            results.setdefault(case, Counter())[f"{status} {answer}"] += 1
    for invoice in a_invoices:  # A's own invoice and A's secret, sent to B's URL
        body = event_for(stack, a, paid_session(stack, invoice))
        status, answer = await deliver(stack, b.webhook_url, body, a_secret)
        results.setdefault("A-signed, A's invoice, to B's URL", Counter())[f"{status} {answer}"] += 1
    await stack.sandbox.stripe.wait_deliveries_idle(30)
    changed = [key for key in watched if status_of(stack, key) != before[key]]
    # the control: B's customer pays through B's link and B's endpoint, and that does pay B's invoice
    control = b_invoices[0]
    paid = await stack.sandbox.stripe.pay(control["status"]["paymentLink"]["id"])
    await paid.delivered
    await stack.until("B's own payment to be recorded",
                      lambda: bool(stack.paid(b.namespace, [control["metadata"]["name"]])), 30)
    for case, answers in results.items():
        outcome.figures[case] = ", ".join(f"{k} x{v}" for k, v in sorted(answers.items()))
    outcome.figures.update({"cross-tenant requests": sum(sum(c.values()) for c in results.values()),
                            "invoices changed (A's and B's)": len(changed),
                            "B's own payment recorded": 1})
    outcome.check("B untouched (and A's same-named invoices too)", not changed)
    outcome.check("A's secret naming B's invoice at A's URL is unmatched",
                  set(results["A-signed, B's invoice, to A's URL"]) == {"200 unmatched"})
    outcome.check("A's secret against B's URL fails the signature check",
                  set(results["A-signed, B's invoice, to B's URL"]) == {"400 signature_failed"}
                  and set(results["A-signed, A's invoice, to B's URL"]) == {"400 signature_failed"})


async def replay(stack: Stack, size: Size, rng: random.Random, outcome: Outcome) -> None:
    tenant = await stack.tenant("chaos-replay")
    count = size.n(20, minimum=4)
    invoices = await stack.open_invoices(tenant, 2 * count)
    paid_ones, open_ones = invoices[:count], invoices[count:]
    secret = stack.signing_secrets(tenant)[0]
    answers: dict[str, Counter[str]] = {}

    def note(case: str, status: int, answer: str) -> None:
        answers.setdefault(case, Counter())[f"{status} {answer}"] += 1

    delivered_events: list[bytes] = []
    for invoice in paid_ones:  # a real payment, delivered by the stand-in
        result = await stack.sandbox.stripe.pay(invoice["status"]["paymentLink"]["id"])
        await result.delivered
        delivered_events.append(json.dumps(result.events[0], indent=2).encode())
    names = [i["metadata"]["name"] for i in paid_ones]
    await stack.until("the payments to be recorded", lambda: len(stack.paid(tenant.namespace, names)) == count, 60)
    snapshot = {n: payment_projection(stack.invoice(tenant.namespace, n)) for n in names}
    paid_events = len(stack.events(tenant.namespace, "Paid"))
    now = int(time.time())
    for body in delivered_events:
        note("applied event replayed, older than the tolerance",
             *await deliver(stack, tenant.webhook_url, body, secret, now - TOLERANCE_S - 60))
        note("applied event replayed, within the tolerance",
             *await deliver(stack, tenant.webhook_url, body, secret))
    for invoice in open_ones:  # valid events never applied, but signed too long ago or in the future
        body = event_for(stack, tenant, paid_session(stack, invoice))
        note("fresh valid event, timestamp older than the tolerance",
             *await deliver(stack, tenant.webhook_url, body, secret, now - TOLERANCE_S - 60))
        note("fresh valid event, timestamp in the future beyond the tolerance",
             *await deliver(stack, tenant.webhook_url, body, secret, now + TOLERANCE_S + 60))
    second_effects = [n for n in names if payment_projection(stack.invoice(tenant.namespace, n)) != snapshot[n]]
    still_open = [i for i in open_ones if
                  (stack.invoice(tenant.namespace, i["metadata"]["name"]).get("status") or {}).get("phase") == "Open"]
    for case, counter in answers.items():
        outcome.figures[case] = ", ".join(f"{k} x{v}" for k, v in sorted(counter.items()))
    outcome.figures.update({"payments": count, "second effects": len(second_effects),
                            "Paid events before/after": f"{paid_events}/{len(stack.events(tenant.namespace, 'Paid'))}",
                            "unpaid invoices still Open": len(still_open)})
    old = {k: v for k, v in answers.items() if "older" in k or "future" in k}
    outcome.check("events older (or newer) than the tolerance are rejected",
                  all(set(c) == {"400 signature_failed"} for c in old.values()) and len(still_open) == len(open_ones))
    outcome.check("a replay within the tolerance is a duplicate",
                  set(answers["applied event replayed, within the tolerance"]) == {"200 duplicate"})
    outcome.check("no second effect", not second_effects
                  and len(stack.events(tenant.namespace, "Paid")) == paid_events)
