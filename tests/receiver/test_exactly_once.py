"""Point 5 of the issue: duplicate deliveries and the two success events of one payment have one effect."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter

import pytest

from fluxrate.webhook_receiver.logs import DELIVERY_LOGGER

from .conftest import Bench


def _delivery_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [json.loads(r.getMessage().removeprefix("delivery ")) for r in caplog.records if r.name == DELIVERY_LOGGER]


async def test_twenty_invoices_each_event_three_times_shuffled_give_one_effect_each(
    bench: Bench, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=DELIVERY_LOGGER)
    await bench.integration()
    names = [f"inv-{i:02d}" for i in range(20)]
    links = [link for _, link in await asyncio.gather(*(bench.invoice(name) for name in names))]
    results = await asyncio.gather(*(bench.standin.pay(link["id"], duplicate=3, reorder=True) for link in links))
    await asyncio.gather(*(r.delivered for r in results))

    statuses = {name: await bench.invoice_status(name) for name in names}
    assert {s["phase"] for s in statuses.values()} == {"Paid"}
    for result, name in zip(results, names, strict=True):
        payment = statuses[name]["payment"]
        assert payment["providerPaymentId"] == result.payment_intent["id"]
        assert payment["eventId"] in {e["id"] for e in result.events}

    lines = _delivery_lines(caplog)
    event_ids = {e["id"] for r in results for e in r.events}
    mine = [line for line in lines if line.get("eventId") in event_ids]
    assert len(mine) == 20 * 2 * 3  # every delivery answered and logged
    applied = Counter(line["eventId"] for line in mine if line["outcome"] == "applied")
    assert len(applied) == 20 and set(applied.values()) == {1}  # one event of each payment applied, once
    assert {line["outcome"] for line in mine} == {"applied", "duplicate"}
    assert {line["status"] for line in mine} == {200}

    # one Paid Event (one payment record) per invoice
    await bench.running.receiver.events.drain()
    events = await bench.kube.core.list_namespaced_event(bench.namespace)
    paid = Counter(e.involved_object.name for e in events.items if e.reason == "Paid")
    assert paid == Counter({name: 1 for name in names})
    second = [e for e in events.items if e.reason == "SecondPayment"]
    assert second == []

    await bench.flush()
    counts = (await bench.get("stripeintegrations", "stripe"))["status"]["deliveries"]["counts"]
    assert counts["applied"] == 20 and counts["duplicate"] == 100


async def test_redelivery_after_restart_is_a_duplicate_from_the_invoice_itself(bench: Bench) -> None:
    """The in-memory memory is a fast path only: the invoice's processedEvents decides across replicas."""
    await bench.integration()
    _, link = await bench.invoice("inv-1")
    event = bench.event("payment_intent.succeeded", {
        "id": "pi_1", "object": "payment_intent", "amount": 23650, "amount_received": 23650, "currency": "usd",
        "livemode": False, "metadata": link["metadata"]})
    assert (await bench.send(event))[1]["outcome"] == "applied"
    bench.running.receiver.recent = type(bench.running.receiver.recent)()  # as a fresh replica
    bench.running.receiver.processor.recent = bench.running.receiver.recent
    code, answer = await bench.send(event)
    assert (code, answer["outcome"]) == (200, "duplicate")
    assert (await bench.invoice_status("inv-1"))["processedEvents"] == [event["id"]]


async def test_redelivered_payment_failed_gives_one_last_payment_error_and_one_event(bench: Bench) -> None:
    """A failure event delivered three times, the last one to a fresh replica: one record, one PaymentFailed."""
    await bench.integration()
    _, link = await bench.invoice("inv-1")
    failed = bench.event("payment_intent.payment_failed", {
        "id": "pi_failed_1", "object": "payment_intent", "amount": 23650, "amount_received": 0, "currency": "usd",
        "livemode": False, "metadata": link["metadata"], "status": "requires_payment_method",
        "last_payment_error": {"code": "card_declined", "message": "Your card was declined."}})
    outcomes = [(await bench.send(failed))[1]["outcome"] for _ in range(2)]
    first = await bench.invoice_status("inv-1")
    bench.running.receiver.recent = type(bench.running.receiver.recent)()  # as a fresh replica
    bench.running.receiver.processor.recent = bench.running.receiver.recent
    code, answer = await bench.send(failed)
    outcomes.append(answer["outcome"])
    assert code == 200
    assert outcomes == ["applied", "duplicate", "duplicate"]

    status = await bench.invoice_status("inv-1")
    assert status["phase"] == "Open"
    assert status["lastPaymentError"] == first["lastPaymentError"]  # written once, not rewritten by a redelivery
    assert status["lastPaymentError"]["eventId"] == failed["id"]
    assert status["lastPaymentError"]["code"] == "card_declined"
    assert status["processedEvents"] == [failed["id"]]

    await bench.running.receiver.events.drain()
    events = await bench.kube.core.list_namespaced_event(bench.namespace)
    payment_failed = [e for e in events.items if e.reason == "PaymentFailed" and e.involved_object.name == "inv-1"]
    assert len(payment_failed) == 1 and payment_failed[0].count == 1
