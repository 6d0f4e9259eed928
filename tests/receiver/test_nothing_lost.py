"""Point 6 of the issue: a 2xx only after a durable write; a failing Kubernetes API answers 5xx and Stripe's
redelivery completes the payment after recovery."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from fluxrate_sandbox.stripe_standin import StripeStandin

from ..conftest import eventually
from .conftest import Bench


@pytest.fixture
async def stripe_standin() -> AsyncIterator[StripeStandin]:
    # retries after 0.3 s, 1.5 s, 9 s: room to recover the API between them
    async with StripeStandin(webhook_time_scale=0.005) as standin:
        yield standin


async def test_api_outage_answers_5xx_and_the_redelivery_after_recovery_pays(bench: Bench) -> None:
    await bench.integration()
    _, link = await bench.invoice("inv-1")
    bench.sandbox.faults.outage = True
    result = await bench.standin.pay(link["id"])
    ids = {e["id"] for e in result.events}
    failed = await eventually(lambda: [a for a in bench.standin.delivery_log if a.event_id in ids],
                              lambda attempts: len(attempts) == 2, timeout=5)
    assert {a.status for a in failed} == {503}
    bench.sandbox.faults.clear()
    await result.delivered
    assert (await bench.invoice_status("inv-1"))["phase"] == "Paid"
    statuses = [a.status for a in bench.standin.delivery_log if a.event_id in ids]
    assert 200 in statuses and 503 in statuses
    await bench.flush()
    counts = (await bench.get("stripeintegrations", "stripe"))["status"]["deliveries"]["counts"]
    assert counts["error"] >= 2 and counts["applied"] == 1


async def test_failing_status_write_answers_5xx_and_changes_nothing(bench: Bench) -> None:
    await bench.integration()
    _, link = await bench.invoice("inv-1")
    event = bench.event("payment_intent.succeeded", {
        "id": "pi_1", "object": "payment_intent", "amount": 23650, "amount_received": 23650, "currency": "usd",
        "livemode": False, "metadata": link["metadata"]})
    rule = bench.sandbox.faults.fail_always(500, verb="patch", resource="invoices", subresource="status")
    code, answer = await bench.send(event)
    assert (code, answer["outcome"]) == (503, "error")
    assert rule.hits >= 1
    assert (await bench.invoice_status("inv-1"))["phase"] == "Open"
    bench.sandbox.faults.clear()
    assert (await bench.send(event))[1]["outcome"] == "applied"  # not remembered as applied by the failure
    assert (await bench.invoice_status("inv-1"))["phase"] == "Paid"


async def test_conflicts_that_persist_after_retries_answer_5xx(bench: Bench) -> None:
    await bench.integration()
    _, link = await bench.invoice("inv-1")
    event = bench.event("payment_intent.succeeded", {
        "id": "pi_1", "object": "payment_intent", "amount": 23650, "amount_received": 23650, "currency": "usd",
        "livemode": False, "metadata": link["metadata"]})
    bench.sandbox.faults.fail_always(409, verb="patch", resource="invoices", subresource="status")
    code, answer = await bench.send(event)
    assert (code, answer["outcome"]) == (503, "error")
    bench.sandbox.faults.clear()
    assert (await bench.send(event))[1]["outcome"] == "applied"


async def test_a_disabled_integration_still_records_payments_for_links_already_sent(bench: Bench) -> None:
    await bench.integration(active=False)
    _, link = await bench.invoice("inv-1")
    result = await bench.standin.pay(link["id"])
    await result.delivered
    assert (await bench.invoice_status("inv-1"))["phase"] == "Paid"
