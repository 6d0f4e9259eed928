"""Refunds and disputes as signed deliveries from the Stripe stand-in, through the real receiver: exactly one effect
per Stripe event under three shuffled copies, visible in the invoice status, its Events and the answers."""

from __future__ import annotations

import json
import logging
from collections import Counter
from typing import Any

import pytest

from fluxrate import conditions
from fluxrate.webhook_receiver.logs import DELIVERY_LOGGER

from .conftest import Bench


async def paid(bench: Bench, name: str = "inv-1", **kwargs: Any) -> str:
    """An invoice paid through its link (by card); returns the PaymentIntent id."""
    _, link = await bench.invoice(name, **kwargs)
    result = await bench.standin.pay(link["id"])
    await result.delivered
    assert (await bench.invoice_status(name))["phase"] == "Paid"
    return str(result.payment_intent["id"])


def outcomes(caplog: pytest.LogCaptureFixture, event_ids: set[str]) -> Counter[tuple[str, str]]:
    lines = [json.loads(r.getMessage().removeprefix("delivery ")) for r in caplog.records if r.name == DELIVERY_LOGGER]
    return Counter((line["eventId"], line["outcome"]) for line in lines if line.get("eventId") in event_ids)


def assert_once_each(caplog: pytest.LogCaptureFixture, events: list[dict[str, Any]]) -> None:
    """Every event answered three times: applied (or ignored when older than what was applied) once, else
    duplicate."""
    ids = {e["id"] for e in events}
    seen = outcomes(caplog, ids)
    for event_id in ids:
        first = {o: n for (e, o), n in seen.items() if e == event_id and o != "duplicate"}
        assert sum(first.values()) == 1, (event_id, seen)
        assert seen[(event_id, "duplicate")] == 2, (event_id, seen)


async def invoice_events(bench: Bench, name: str = "inv-1") -> Counter[str]:
    await bench.running.receiver.events.drain()
    items = (await bench.kube.core.list_namespaced_event(bench.namespace)).items
    return Counter(e.reason for e in items if e.involved_object.name == name)


@pytest.fixture(autouse=True)
def _delivery_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=DELIVERY_LOGGER)


async def test_partial_refund_keeps_paid_and_shows_the_refunded_amount(
    bench: Bench, caplog: pytest.LogCaptureFixture
) -> None:
    await bench.integration()
    pi = await paid(bench)
    result = await bench.standin.refund(pi, amount=5000, duplicate=3, reorder=True)
    await result.delivered
    assert sorted(result.event_types) == ["charge.refunded", "refund.created"]

    status = await bench.invoice_status("inv-1")
    assert status["phase"] == "Paid"
    assert status["amountRefunded"] == {"minor": 5000, "amount": "50.00", "currency": "USD", "display": "50.00 USD"}
    assert result.refund is not None
    assert [(r["id"], r["amount"], r["status"]) for r in status["refunds"]] == [
        (result.refund["id"], "50.00", "succeeded")]
    assert_once_each(caplog, result.events)
    assert (await invoice_events(bench))["PartiallyRefunded"] == 1


async def test_full_refund_moves_to_refunded_once(bench: Bench, caplog: pytest.LogCaptureFixture) -> None:
    await bench.integration()
    pi = await paid(bench)
    result = await bench.standin.refund(pi, duplicate=3, reorder=True)
    await result.delivered

    status = await bench.invoice_status("inv-1")
    assert status["phase"] == "Refunded"
    assert status["amountRefunded"]["minor"] == status["payment"]["amountMinor"] == 23650
    ready = conditions.get(status["conditions"], "Ready")
    assert ready is not None and (ready["status"], ready["reason"]) == ("True", "Refunded")
    assert_once_each(caplog, result.events)
    reasons = await invoice_events(bench)
    assert reasons["Refunded"] == 1 and reasons["PartiallyRefunded"] == 0

    # a payment event redelivered after the refund is a duplicate, never a move back to Paid
    payment_event = bench.standin.events[status["payment"]["eventId"]].obj
    code, answer = await bench.send(payment_event)
    assert (code, answer["outcome"]) == (200, "duplicate")
    assert (await bench.invoice_status("inv-1"))["phase"] == "Refunded"


async def test_failed_refund_is_recorded_and_no_longer_counts(bench: Bench, caplog: pytest.LogCaptureFixture) -> None:
    await bench.integration()
    pi = await paid(bench)
    created = await bench.standin.refund(pi, pending=True)
    await created.delivered
    assert created.refund is not None
    assert (await bench.invoice_status("inv-1"))["phase"] == "Refunded"

    failed = await bench.standin.fail_refund(created.refund["id"], "insufficient_funds", duplicate=3, reorder=True)
    await failed.delivered
    status = await bench.invoice_status("inv-1")
    assert status["phase"] == "Paid" and status["amountRefunded"]["minor"] == 0
    [record] = status["refunds"]
    assert (record["status"], record["failureReason"]) == ("failed", "insufficient_funds")
    assert conditions.get(status["conditions"], "Ready")["reason"] == "Paid"  # type: ignore[index]
    assert_once_each(caplog, failed.events)
    assert (await invoice_events(bench))["RefundFailed"] == 1


async def test_dispute_opened_then_lost_counts_as_refunded(bench: Bench, caplog: pytest.LogCaptureFixture) -> None:
    await bench.integration()
    pi = await paid(bench)
    opened = await bench.standin.open_dispute(pi, "product_not_received", duplicate=3, reorder=True)
    await opened.delivered
    assert opened.dispute is not None
    status = await bench.invoice_status("inv-1")
    disputed = conditions.get(status["conditions"], "Disputed")
    assert disputed is not None and (disputed["status"], disputed["reason"]) == ("True", "DisputeOpen")
    assert "submit evidence in the Stripe Dashboard before" in disputed["message"]
    assert status["dispute"]["status"] == "needs_response" and status["dispute"]["fundsWithdrawn"] is True
    assert status["phase"] == "Paid"

    lost = await bench.standin.close_dispute(opened.dispute["id"], won=False, duplicate=3, reorder=True)
    await lost.delivered
    status = await bench.invoice_status("inv-1")
    assert status["dispute"]["status"] == "lost"
    assert status["phase"] == "Refunded" and status["amountRefunded"]["minor"] == 23650
    assert conditions.get(status["conditions"], "Disputed")["reason"] == "DisputeLost"  # type: ignore[index]
    assert_once_each(caplog, opened.events + lost.events)
    reasons = await invoice_events(bench)
    assert (reasons["DisputeOpened"], reasons["DisputeLost"]) == (1, 1)

    async with bench.http.get(f"{bench.running.url}/metrics") as resp:
        text = await resp.text()
    assert 'fluxrate_receiver_deliveries_total{outcome="applied",type="charge.dispute.created"} 1.0' in text


async def test_dispute_won_does_not_count(bench: Bench) -> None:
    await bench.integration()
    pi = await paid(bench)
    opened = await bench.standin.open_dispute(pi)
    await opened.delivered
    assert opened.dispute is not None
    await (await bench.standin.submit_dispute_evidence(opened.dispute["id"])).delivered
    assert (await bench.invoice_status("inv-1"))["dispute"]["status"] == "under_review"
    await (await bench.standin.close_dispute(opened.dispute["id"], won=True)).delivered
    status = await bench.invoice_status("inv-1")
    assert status["phase"] == "Paid" and status.get("amountRefunded", {}).get("minor", 0) == 0
    assert status["dispute"]["fundsWithdrawn"] is False
    assert conditions.get(status["conditions"], "Disputed")["reason"] == "DisputeWon"  # type: ignore[index]
    assert (await invoice_events(bench))["DisputeWon"] == 1


async def test_refund_of_a_payment_fluxrate_did_not_take_is_unmatched_without_retries(bench: Bench) -> None:
    await bench.integration()
    event = bench.event("refund.created", {
        "id": "re_foreign", "object": "refund", "amount": 500, "currency": "usd", "status": "succeeded",
        "payment_intent": "pi_foreign", "charge": "ch_foreign", "created": 1_790_000_000})
    code, answer = await bench.send(event)
    assert (code, answer["outcome"]) == (200, "unmatched")
    assert "pi_foreign" in answer["reason"]


async def test_charge_refunded_before_the_payment_is_recorded_is_redelivered(bench: Bench) -> None:
    """The refund's own event went unmatched; charge.refunded names the invoice: 503 until the payment is recorded,
    then it counts the refund Stripe reports."""
    await bench.integration()
    _, link = await bench.invoice("inv-1")
    charge = {"id": "ch_early", "object": "charge", "amount": 23650, "amount_refunded": 5000, "currency": "usd",
              "payment_intent": "pi_early", "refunded": False, "metadata": dict(link["metadata"])}
    charge_refunded = bench.event("charge.refunded", charge)
    code, answer = await bench.send(charge_refunded)
    assert (code, answer["outcome"]) == (503, "error") and "pi_early" in answer["reason"]

    succeeded = bench.event("payment_intent.succeeded", {
        "id": "pi_early", "object": "payment_intent", "amount": 23650, "amount_received": 23650, "currency": "usd",
        "metadata": dict(link["metadata"])})
    assert (await bench.send(succeeded))[1]["outcome"] == "applied"
    code, answer = await bench.send(charge_refunded)
    assert (code, answer["outcome"]) == (200, "applied")
    status = await bench.invoice_status("inv-1")
    assert status["phase"] == "Paid" and status["amountRefunded"]["display"] == "50.00 USD"
