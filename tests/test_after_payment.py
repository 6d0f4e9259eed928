"""Refunds and disputes applied to a paid invoice (pure: ``after_payment.decide``), as the user sees the status."""

from __future__ import annotations

import datetime as dt
import itertools
import random
from typing import Any

import pytest

from fluxrate import after_payment, conditions
from fluxrate.after_payment import AfterPaymentReport
from fluxrate.invoice_status import can_move
from fluxrate.models import InvoiceStatus

MOMENT = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
T0 = 1_790_000_000
_ids = itertools.count(1)


def paid_invoice(amount: int = 10000, currency: str = "USD", amount_text: str = "100.00") -> dict[str, Any]:
    return {"metadata": {"name": "inv-1", "uid": "uid-1", "generation": 1}, "spec": {"currency": currency},
            "status": {"phase": "Paid", "processedEvents": ["evt_paid"],
                       "payment": {"providerPaymentId": "pi_1", "amount": amount_text, "amountMinor": amount,
                                   "currency": currency, "paidAt": "2026-12-01T10:00:00Z", "source": "webhook"},
                       "conditions": [{"type": "Ready", "status": "True", "reason": "Paid", "message": "Paid.",
                                       "lastTransitionTime": "2026-12-01T10:00:00Z"}]}}


def refund_event(type_: str, refund_id: str, amount: int, status: str, at: int, *, currency: str = "usd",
                 failure_reason: str | None = None) -> dict[str, Any]:
    obj = {"id": refund_id, "object": "refund", "amount": amount, "currency": currency, "status": status,
           "reason": "requested_by_customer", "payment_intent": "pi_1", "charge": "ch_1", "created": T0}
    if failure_reason:
        obj["failure_reason"] = failure_reason
    return {"id": f"evt_{next(_ids)}", "type": type_, "created": at, "data": {"object": obj}}


def charge_event(amount_refunded: int, at: int, *, amount: int = 10000, currency: str = "usd") -> dict[str, Any]:
    obj = {"id": "ch_1", "object": "charge", "amount": amount, "amount_refunded": amount_refunded,
           "currency": currency, "payment_intent": "pi_1", "refunded": amount_refunded >= amount,
           "metadata": {"invoice_id": "inv-1", "invoice_uid": "uid-1", "namespace": "billing"}}
    return {"id": f"evt_{next(_ids)}", "type": "charge.refunded", "created": at, "data": {"object": obj}}


def dispute_event(type_: str, status: str, at: int, *, amount: int = 10000) -> dict[str, Any]:
    obj = {"id": "du_1", "object": "dispute", "amount": amount, "currency": "usd", "status": status,
           "reason": "fraudulent", "payment_intent": "pi_1", "charge": "ch_1", "created": T0,
           "evidence_details": {"due_by": T0 + 7 * 86400}}
    return {"id": f"evt_{next(_ids)}", "type": type_, "created": at, "data": {"object": obj}}


def report(event: dict[str, Any]) -> AfterPaymentReport:
    found = after_payment.report_from_event(event)
    assert found is not None
    return found


def apply(invoice: dict[str, Any], *events: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
    """Apply events in order as the receiver would (the phase table enforced); returns (invoice, all Events)."""
    posted = []
    for event in events:
        decision = after_payment.decide(invoice, report(event), MOMENT)
        posted += decision.events
        if decision.changes:
            if "phase" in decision.changes:
                assert can_move(invoice["status"]["phase"], decision.changes["phase"])
            invoice = {**invoice, "status": {**invoice["status"], **decision.changes}}
    InvoiceStatus.model_validate(invoice["status"])  # what the CRD accepts
    return invoice, posted


def refunded(invoice: dict[str, Any]) -> int:
    return int(invoice["status"].get("amountRefunded", {}).get("minor", 0))


def reasons(events: list[Any]) -> list[str]:
    return [e.reason for e in events]


def test_full_refund_moves_to_refunded_with_ready_refunded_and_one_event() -> None:
    invoice, events = apply(paid_invoice(), refund_event("refund.created", "re_1", 10000, "succeeded", T0))
    status = invoice["status"]
    assert status["phase"] == "Refunded"
    assert status["amountRefunded"] == {"minor": 10000, "amount": "100.00", "currency": "USD",
                                        "display": "100.00 USD"}
    assert status["refunds"][0] | {} == {**status["refunds"][0], "id": "re_1", "status": "succeeded",
                                         "amount": "100.00", "currency": "USD", "reason": "requested_by_customer"}
    ready = conditions.get(status["conditions"], "Ready")
    assert ready is not None and (ready["status"], ready["reason"]) == ("True", "Refunded")
    assert "100.00 of 100.00 USD" in ready["message"]
    assert reasons(events) == ["Refunded"]


def test_partial_refund_keeps_paid_and_its_ready_and_says_how_much() -> None:
    invoice, events = apply(paid_invoice(), refund_event("refund.created", "re_1", 2500, "pending", T0))
    assert invoice["status"]["phase"] == "Paid"
    assert refunded(invoice) == 2500 and invoice["status"]["amountRefunded"]["amount"] == "25.00"
    assert conditions.get(invoice["status"]["conditions"], "Ready")["reason"] == "Paid"  # type: ignore[index]
    assert reasons(events) == ["PartiallyRefunded"]
    assert "25.00 of 100.00 USD refunded in total" in events[0].message


def test_two_partials_that_sum_to_the_payment_refund_it() -> None:
    invoice, events = apply(paid_invoice(), refund_event("refund.created", "re_1", 4000, "succeeded", T0),
                            refund_event("refund.created", "re_2", 6000, "succeeded", T0 + 5))
    assert invoice["status"]["phase"] == "Refunded" and refunded(invoice) == 10000
    assert reasons(events) == ["PartiallyRefunded", "Refunded"]


def test_failed_after_succeeded_no_longer_counts_and_goes_back_to_paid() -> None:
    invoice, events = apply(
        paid_invoice(), refund_event("refund.created", "re_1", 10000, "succeeded", T0),
        refund_event("refund.failed", "re_1", 10000, "failed", T0 + 60, failure_reason="expired_or_canceled_card"))
    status = invoice["status"]
    assert status["phase"] == "Paid" and refunded(invoice) == 0
    assert status["refunds"][0]["status"] == "failed"
    assert status["refunds"][0]["failureReason"] == "expired_or_canceled_card"
    assert conditions.get(status["conditions"], "Ready")["reason"] == "Paid"  # type: ignore[index]
    assert reasons(events) == ["Refunded", "RefundFailed"]
    assert "expired_or_canceled_card" in events[1].message and "Stripe Dashboard" in events[1].message


def test_canceled_refund_no_longer_counts() -> None:
    invoice, events = apply(paid_invoice(), refund_event("refund.created", "re_1", 3000, "requires_action", T0),
                            refund_event("refund.updated", "re_1", 3000, "canceled", T0 + 60))
    assert refunded(invoice) == 0 and invoice["status"]["phase"] == "Paid"
    assert reasons(events) == ["PartiallyRefunded", "RefundCanceled"]


def test_an_older_event_after_a_newer_changes_nothing_but_is_remembered() -> None:
    newer = refund_event("refund.updated", "re_1", 10000, "succeeded", T0 + 60)
    older = refund_event("refund.created", "re_1", 10000, "pending", T0)
    invoice, _ = apply(paid_invoice(), newer)
    decision = after_payment.decide(invoice, report(older), MOMENT)
    assert decision.outcome == "ignored" and decision.events == []
    assert decision.changes == {"processedEvents": [*invoice["status"]["processedEvents"], older["id"]]}


def test_same_second_takes_the_more_final_status() -> None:
    failed = refund_event("refund.failed", "re_1", 5000, "failed", T0, failure_reason="declined")
    pending = refund_event("refund.created", "re_1", 5000, "pending", T0)
    for order in ((pending, failed), (failed, pending)):
        invoice, _ = apply(paid_invoice(), *order)
        assert invoice["status"]["refunds"][0]["status"] == "failed" and refunded(invoice) == 0


def test_a_redelivered_event_is_a_duplicate() -> None:
    event = refund_event("refund.created", "re_1", 2500, "succeeded", T0)
    invoice, _ = apply(paid_invoice(), event)
    decision = after_payment.decide(invoice, report(event), MOMENT)
    assert (decision.outcome, decision.changes, decision.events) == ("duplicate", None, [])


def test_lost_dispute_counts_as_returned_and_won_does_not() -> None:
    opened = dispute_event("charge.dispute.created", "needs_response", T0)
    invoice, events = apply(paid_invoice(), opened)
    disputed = conditions.get(invoice["status"]["conditions"], "Disputed")
    assert disputed is not None and (disputed["status"], disputed["reason"]) == ("True", "DisputeOpen")
    assert "submit evidence in the Stripe Dashboard before 2026-" in disputed["message"]
    assert reasons(events) == ["DisputeOpened"] and events[0].type == "Warning"
    assert "fraudulent" in events[0].message and "100.00 USD" in events[0].message

    lost, lost_events = apply(invoice, dispute_event("charge.dispute.closed", "lost", T0 + 60))
    assert lost["status"]["phase"] == "Refunded" and refunded(lost) == 10000
    assert conditions.get(lost["status"]["conditions"], "Disputed")["reason"] == "DisputeLost"  # type: ignore[index]
    assert reasons(lost_events) == ["DisputeLost", "Refunded"]

    won, won_events = apply(invoice, dispute_event("charge.dispute.closed", "won", T0 + 60))
    assert won["status"]["phase"] == "Paid" and refunded(won) == 0
    assert conditions.get(won["status"]["conditions"], "Disputed")["status"] == "False"  # type: ignore[index]
    assert reasons(won_events) == ["DisputeWon"]


def test_funds_withdrawn_and_reinstated_are_recorded() -> None:
    invoice, _ = apply(paid_invoice(), dispute_event("charge.dispute.created", "needs_response", T0),
                       dispute_event("charge.dispute.funds_withdrawn", "needs_response", T0))
    assert invoice["status"]["dispute"]["fundsWithdrawn"] is True
    invoice, _ = apply(invoice, dispute_event("charge.dispute.funds_reinstated", "won", T0 + 9))
    assert invoice["status"]["dispute"]["fundsWithdrawn"] is False


@pytest.mark.parametrize(("currency", "paid", "paid_text", "minor", "shown"), [
    ("JPY", 5000, "5000", 1500, "1500"), ("KWD", 12340, "12.340", 2000, "2.000"), ("USD", 10000, "100.00", 5, "0.05")])
def test_amounts_use_the_currency_exponent(currency: str, paid: int, paid_text: str, minor: int, shown: str) -> None:
    invoice, _ = apply(paid_invoice(paid, currency, paid_text),
                       refund_event("refund.created", "re_1", minor, "succeeded", T0, currency=currency.lower()))
    assert invoice["status"]["refunds"][0]["amount"] == shown
    assert invoice["status"]["amountRefunded"] == {"minor": minor, "amount": shown, "currency": currency,
                                                   "display": f"{shown} {currency}"}


def test_refund_of_an_invoice_without_its_payment_asks_stripe_to_redeliver() -> None:
    invoice = paid_invoice()
    invoice["status"] = {"phase": "Open"}
    decision = after_payment.decide(invoice, report(charge_event(5000, T0)), MOMENT)
    assert decision.retry_after is not None and decision.changes is None
    assert "pi_1" in decision.reason


def test_refund_of_another_payment_of_the_invoice_is_ignored() -> None:
    event = refund_event("refund.created", "re_1", 5000, "succeeded", T0)
    event["data"]["object"]["payment_intent"] = "pi_second"
    decision = after_payment.decide(paid_invoice(), report(event), MOMENT)
    assert decision.outcome == "ignored" and "pi_second" in decision.reason
    assert set(decision.changes or {}) == {"processedEvents"}


# --- charge.refunded: amount_refunded when a refund event went unmatched ---------------------------------------


def test_charge_refunded_alone_counts_the_refund_it_reports() -> None:
    invoice, events = apply(paid_invoice(), charge_event(3000, T0))
    assert refunded(invoice) == 3000 and invoice["status"]["phase"] == "Paid"
    assert invoice["status"]["refunds"] == []  # no refund object was seen: none is invented
    snapshot = invoice["status"]["chargeRefunded"]
    assert (snapshot["chargeId"], snapshot["amountMinor"], snapshot["amount"]) == ("ch_1", 3000, "30.00")
    assert reasons(events) == ["PartiallyRefunded"]


def test_charge_refunded_and_refund_events_never_double_count_in_any_order() -> None:
    """Two partial refunds (30 + 70): each refund's events and the charge's snapshots, in every order."""
    events = [refund_event("refund.created", "re_1", 3000, "succeeded", T0),
              charge_event(3000, T0),
              refund_event("refund.created", "re_2", 7000, "pending", T0 + 10),
              charge_event(10000, T0 + 10),
              refund_event("refund.updated", "re_2", 7000, "succeeded", T0 + 20)]
    for order in itertools.permutations(events):
        invoice, _ = apply(paid_invoice(), *order)
        assert refunded(invoice) == 10000, [e["type"] for e in order]
        assert invoice["status"]["phase"] == "Refunded"
        assert {r["id"] for r in invoice["status"]["refunds"]} == {"re_1", "re_2"}


def test_a_missing_refund_counts_through_the_charge_until_its_failure_arrives() -> None:
    """refund.created of re_1 went unmatched (before the payment was recorded); the charge reported it; then the
    refund failed: nothing stays counted, whatever the order of the last two events."""
    snapshot = charge_event(10000, T0)
    failure = refund_event("refund.failed", "re_1", 10000, "failed", T0 + 60, failure_reason="declined")
    for order in ((snapshot, failure), (failure, snapshot)):
        invoice, _ = apply(paid_invoice(), *order)
        assert refunded(invoice) == 0 and invoice["status"]["phase"] == "Paid"
        assert [r["id"] for r in invoice["status"]["refunds"]] == ["re_1"]


def test_three_shuffled_copies_of_every_event_give_one_effect_each() -> None:
    events = [refund_event("refund.created", "re_1", 2500, "pending", T0), charge_event(2500, T0),
              refund_event("refund.updated", "re_1", 2500, "succeeded", T0 + 30),
              dispute_event("charge.dispute.created", "needs_response", T0 + 40),
              dispute_event("charge.dispute.closed", "lost", T0 + 90, amount=7500)]
    rng = random.Random(17)
    for _ in range(20):
        copies = events * 3
        rng.shuffle(copies)
        invoice, posted = apply(paid_invoice(), *copies)
        assert refunded(invoice) == 10000 and invoice["status"]["phase"] == "Refunded"
        assert invoice["status"]["dispute"]["status"] == "lost"
        assert reasons(posted).count("DisputeLost") == 1
        assert sum(1 for e in invoice["status"]["processedEvents"] if e != "evt_paid") == len(events)


def test_a_refund_failing_in_the_same_second_as_the_charge_snapshot_no_longer_counts() -> None:
    # Stripe's times are whole seconds: charge.refunded (sent as the refund is created) and the refund's failure can
    # carry the same one; the failure came after the snapshot, so the charge does not count the refund again
    events = [refund_event("refund.created", "re_1", 10000, "succeeded", T0), charge_event(10000, T0),
              refund_event("refund.failed", "re_1", 10000, "failed", T0)]
    for order in itertools.permutations(events):
        invoice, _ = apply(paid_invoice(), *order)
        assert refunded(invoice) == 0 and invoice["status"]["phase"] == "Paid", [e["type"] for e in order]
