"""Point 4 of the issue: what each Stripe event does to the invoice it names, one test per bullet."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from fluxrate_sandbox.stripe_standin import StripeStandin

from ..conftest import eventually
from .conftest import Bench


async def _paid(bench: Bench, name: str) -> dict[str, Any]:
    return await eventually(lambda: bench.invoice_status(name), lambda s: s.get("phase") == "Paid", timeout=10)


def _session(link: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A Checkout Session as Stripe sends it for a payment link (metadata copied from the link)."""
    return {"id": "cs_test_a1", "object": "checkout.session", "amount_total": 23650, "currency": "usd",
            "livemode": False, "metadata": dict(link["metadata"]), "payment_intent": "pi_test_1",
            "payment_link": link["id"], "payment_status": "paid", "status": "complete", **fields}


def _intent(link: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"id": "pi_test_1", "object": "payment_intent", "amount": 23650, "amount_received": 23650,
            "currency": "usd", "livemode": False, "metadata": dict(link["metadata"]), "status": "succeeded",
            "last_payment_error": None, **fields}


async def test_checkout_completed_paid_marks_paid_with_amount_total(bench: Bench, stripe_standin: StripeStandin
                                                                    ) -> None:
    await bench.integration()
    _, link = await bench.invoice("inv-1")
    result = await stripe_standin.pay(link["id"], method="card")
    await result.delivered
    status = await _paid(bench, "inv-1")
    payment = status["payment"]
    completed = next(e for e in result.events if e["type"] == "checkout.session.completed")
    assert payment["amountMinor"] == completed["data"]["object"]["amount_total"] == 23650
    assert Decimal(payment["amount"]) == Decimal("236.50")
    assert payment["currency"] == "USD"
    assert payment["providerPaymentId"] == result.payment_intent["id"]
    assert payment["eventId"] in {e["id"] for e in result.events}
    assert payment["paidAt"]
    assert "AmountMismatch" not in {c["type"] for c in status.get("conditions", [])}


async def test_checkout_completed_unpaid_waits_for_the_delayed_payment_then_async_success_pays(
    bench: Bench, stripe_standin: StripeStandin
) -> None:
    await bench.integration()
    _, link = await bench.invoice("inv-1")
    completed_unpaid = bench.event("checkout.session.completed", _session(link, payment_status="unpaid"))
    assert await bench.send(completed_unpaid) == (200, {"outcome": "applied", "eventId": completed_unpaid["id"],
                                                        "invoice": "inv-1"})
    status = await bench.invoice_status("inv-1")
    assert status["phase"] == "Open"
    assert status["pendingPayment"]["eventId"] == completed_unpaid["id"]

    succeeded = bench.event("checkout.session.async_payment_succeeded", _session(link))
    code, answer = await bench.send(succeeded)
    assert (code, answer["outcome"]) == (200, "applied")
    status = await bench.invoice_status("inv-1")
    assert status["phase"] == "Paid"
    assert "pendingPayment" not in status or status["pendingPayment"] is None
    assert status["payment"]["eventType"] == "checkout.session.async_payment_succeeded"


async def test_delayed_payment_through_the_standin_ends_paid(bench: Bench, stripe_standin: StripeStandin) -> None:
    await bench.integration()
    _, link = await bench.invoice("inv-1")
    result = await stripe_standin.pay(link["id"], method="delayed", outcome="succeeded")
    assert result.event_types[:2] == ["checkout.session.completed", "checkout.session.async_payment_succeeded"]
    await result.delivered
    status = await _paid(bench, "inv-1")
    assert status["payment"]["amountMinor"] == 23650


async def test_async_payment_failed_records_the_error_and_keeps_the_invoice_payable(
    bench: Bench, stripe_standin: StripeStandin
) -> None:
    await bench.integration()
    _, link = await bench.invoice("inv-1")
    result = await stripe_standin.pay(link["id"], method="delayed", outcome="failed")
    await result.delivered
    status = await eventually(lambda: bench.invoice_status("inv-1"), lambda s: bool(s.get("lastPaymentError")))
    assert status["phase"] == "Open"
    assert status["lastPaymentError"]["eventType"] in ("checkout.session.async_payment_failed",
                                                       "payment_intent.payment_failed")


async def test_payment_failed_records_last_payment_error_then_a_later_success_ends_paid(
    bench: Bench, stripe_standin: StripeStandin
) -> None:
    await bench.integration()
    _, link = await bench.invoice("inv-1")
    failed = await stripe_standin.pay(link["id"], method="card", outcome="failed")
    await failed.delivered
    status = await eventually(lambda: bench.invoice_status("inv-1"), lambda s: bool(s.get("lastPaymentError")))
    assert status["phase"] == "Open"
    assert status["lastPaymentError"]["message"] == "Your card was declined."
    assert status["lastPaymentError"]["eventType"] == "payment_intent.payment_failed"

    retried = await stripe_standin.pay(link["id"], method="card", outcome="succeeded")
    await retried.delivered
    status = await _paid(bench, "inv-1")
    assert status["payment"]["providerPaymentId"] == retried.payment_intent["id"]


async def test_payment_intent_succeeded_pays_with_amount_received_else_amount(bench: Bench) -> None:
    await bench.integration()
    _, link_a = await bench.invoice("inv-a")
    _, link_b = await bench.invoice("inv-b")
    received = bench.event("payment_intent.succeeded", _intent(link_a, amount_received=23650))
    assert (await bench.send(received))[1]["outcome"] == "applied"
    only_amount = bench.event("payment_intent.succeeded", _intent(link_b, id="pi_test_2", amount_received=None))
    assert (await bench.send(only_amount))[1]["outcome"] == "applied"
    for name, pi in (("inv-a", "pi_test_1"), ("inv-b", "pi_test_2")):
        status = await bench.invoice_status(name)
        assert status["phase"] == "Paid"
        assert status["payment"]["amountMinor"] == 23650
        assert status["payment"]["providerPaymentId"] == pi


async def test_invoice_payment_events_apply_when_our_metadata_is_present(bench: Bench) -> None:
    await bench.integration()
    _, link_a = await bench.invoice("inv-a")
    _, link_b = await bench.invoice("inv-b")
    failed = bench.event("invoice.payment_failed", {
        "id": "in_1", "object": "invoice", "amount_due": 23650, "currency": "usd",
        "metadata": dict(link_b["metadata"]), "payment_intent": "pi_b"})
    assert (await bench.send(failed))[1]["outcome"] == "applied"
    assert (await bench.invoice_status("inv-b"))["lastPaymentError"]["eventType"] == "invoice.payment_failed"
    succeeded = bench.event("invoice.payment_succeeded", {
        "id": "in_2", "object": "invoice", "amount_paid": 23650, "currency": "usd",
        "metadata": dict(link_a["metadata"]), "payment_intent": "pi_a"})
    assert (await bench.send(succeeded))[1]["outcome"] == "applied"
    status = await bench.invoice_status("inv-a")
    assert (status["phase"], status["payment"]["providerPaymentId"]) == ("Paid", "pi_a")
    foreign = bench.event("invoice.payment_succeeded", {
        "id": "in_3", "object": "invoice", "amount_paid": 100, "currency": "usd", "metadata": {}})
    assert (await bench.send(foreign))[1]["outcome"] == "unmatched"


async def test_other_event_types_are_ignored(bench: Bench) -> None:
    await bench.integration()
    _, link = await bench.invoice("inv-1")
    event = bench.event("customer.created", {"id": "cus_1", "object": "customer", "metadata": dict(link["metadata"])})
    code, answer = await bench.send(event)
    assert (code, answer["outcome"]) == (200, "ignored")
    assert (await bench.invoice_status("inv-1"))["phase"] == "Open"


async def test_amounts_use_the_currency_exponent(bench: Bench) -> None:
    await bench.integration()
    _, jpy = await bench.invoice("inv-jpy", currency="JPY", lines=(("Consulting", 4, "15000"),))
    _, usd = await bench.invoice("inv-usd")
    assert (await bench.send(bench.event("checkout.session.completed", _session(
        jpy, id="cs_jpy", payment_intent="pi_jpy", amount_total=60000, currency="jpy"))))[1]["outcome"] == "applied"
    assert (await bench.send(bench.event("checkout.session.completed", _session(
        usd, id="cs_usd", payment_intent="pi_usd"))))[1]["outcome"] == "applied"
    jpy_payment = (await bench.invoice_status("inv-jpy"))["payment"]
    usd_payment = (await bench.invoice_status("inv-usd"))["payment"]
    assert (Decimal(jpy_payment["amount"]), jpy_payment["currency"]) == (Decimal("60000"), "JPY")
    assert (Decimal(usd_payment["amount"]), usd_payment["currency"]) == (Decimal("236.50"), "USD")


async def test_events_without_our_metadata_are_unmatched(bench: Bench) -> None:
    await bench.integration()
    await bench.invoice("inv-1")
    event = bench.event("checkout.session.completed", {"id": "cs_other", "object": "checkout.session",
                                                       "amount_total": 500, "currency": "usd",
                                                       "payment_status": "paid", "metadata": {}})
    assert await bench.send(event) == (200, {"outcome": "unmatched", "eventId": event["id"],
                                             "reason": "no fluxrate invoice_id in the metadata"})
    assert (await bench.invoice_status("inv-1"))["phase"] == "Open"


async def test_livemode_that_does_not_match_the_integration_is_ignored_with_a_warning(bench: Bench) -> None:
    await bench.integration(mode="test")
    _, link = await bench.invoice("inv-1")
    event = bench.event("checkout.session.completed", _session(link, livemode=True), livemode=True)
    code, answer = await bench.send(event)
    assert (code, answer["outcome"]) == (200, "ignored")
    assert "live-mode event" in answer["reason"]
    assert (await bench.invoice_status("inv-1"))["phase"] == "Open"
    await bench.running.receiver.events.drain()
    events = await bench.kube.core.list_namespaced_event(bench.namespace)
    warnings = [e for e in events.items if e.involved_object.name == "stripe" and e.reason == "LivemodeMismatch"]
    assert warnings and warnings[0].type == "Warning"


async def test_amount_or_currency_mismatch_is_paid_with_an_amount_mismatch_condition(bench: Bench) -> None:
    await bench.integration()
    _, short = await bench.invoice("inv-short")
    _, euro = await bench.invoice("inv-euro")
    await bench.send(bench.event("checkout.session.completed", _session(short, amount_total=100)))
    await bench.send(bench.event("checkout.session.completed", _session(
        euro, id="cs_eur", payment_intent="pi_eur", currency="eur")))
    for name in ("inv-short", "inv-euro"):
        status = await bench.invoice_status(name)
        assert status["phase"] == "Paid"
        mismatch = [c for c in status["conditions"] if c["type"] == "AmountMismatch"]
        assert mismatch and mismatch[0]["status"] == "True"
    await bench.running.receiver.events.drain()
    events = await bench.kube.core.list_namespaced_event(bench.namespace)
    assert {e.involved_object.name for e in events.items if e.reason == "AmountMismatch"} == {"inv-short", "inv-euro"}
