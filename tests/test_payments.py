"""Payment reports and their effect on an invoice, as data (no server)."""

import datetime as dt
from typing import Any

import pytest

from fluxrate.payments import decide, match_problem, report_from_event

T = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
META = {"invoice_id": "inv-1", "customer_id": "cus-1", "namespace": "team-a", "invoice_uid": "uid-1"}


def invoice(phase: str = "Open", currency: str = "USD", minor: int = 23650, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "inv-1", "namespace": "team-a", "uid": "uid-1", "generation": 1,
                     "resourceVersion": "5"},
        "spec": {"integrationRef": {"name": "prod"}, "currency": currency},
        "status": {"phase": phase, "amountDue": {"minor": minor, "display": f"{minor} {currency}"}, **status},
    }


def event(type_: str, obj: dict[str, Any], event_id: str = "evt_1", livemode: bool = False) -> dict[str, Any]:
    return {"id": event_id, "type": type_, "livemode": livemode, "data": {"object": obj}}


def session(payment_status: str = "paid", amount: int = 23650, currency: str = "usd") -> dict[str, Any]:
    return {"id": "cs_1", "object": "checkout.session", "amount_total": amount, "currency": currency,
            "payment_intent": "pi_1", "payment_status": payment_status, "metadata": META}


def intent(amount: int = 23650, received: int | None = 23650, error: dict | None = None) -> dict[str, Any]:
    return {"id": "pi_1", "object": "payment_intent", "amount": amount, "amount_received": received,
            "currency": "usd", "metadata": META, "last_payment_error": error}


def test_checkout_session_paid_marks_paid_with_amount_total() -> None:
    report = report_from_event(event("checkout.session.completed", session()))
    decision = decide(invoice(), report, T)
    assert decision.outcome == "applied"
    assert decision.changes["phase"] == "Paid"
    assert decision.changes["payment"] == {
        "providerPaymentId": "pi_1", "amount": "236.50", "amountMinor": 23650, "currency": "USD",
        "paidAt": "2026-11-27T12:00:00Z", "eventId": "evt_1", "eventType": "checkout.session.completed",
        "source": "webhook",
    }
    assert decision.changes["processedEvents"] == ["evt_1"]


def test_unpaid_session_is_pending_not_paid() -> None:
    decision = decide(invoice(), report_from_event(event("checkout.session.completed", session("unpaid"))), T)
    assert decision.outcome == "applied"
    assert "phase" not in decision.changes
    assert decision.changes["pendingPayment"]["checkoutSessionId"] == "cs_1"


def test_async_success_after_pending_is_paid() -> None:
    report = report_from_event(event("checkout.session.async_payment_succeeded", session("paid"), "evt_2"))
    pending = invoice(pendingPayment={"checkoutSessionId": "cs_1"}, processedEvents=["evt_1"])
    decision = decide(pending, report, T)
    assert decision.changes["phase"] == "Paid" and decision.changes["pendingPayment"] is None


def test_failure_records_stripe_message_and_stays_payable() -> None:
    error = {"message": "Your card was declined.", "code": "card_declined", "decline_code": "generic_decline"}
    report = report_from_event(event("payment_intent.payment_failed", intent(received=0, error=error)))
    decision = decide(invoice(), report, T)
    assert "phase" not in decision.changes
    assert decision.changes["lastPaymentError"]["message"] == "Your card was declined."
    assert decision.changes["lastPaymentError"]["code"] == "generic_decline"


def test_payment_intent_amount_falls_back_to_amount() -> None:
    report = report_from_event(event("payment_intent.succeeded", intent(received=None)))
    assert report.amount_minor == 23650 and report.provider_payment_id == "pi_1"


def test_jpy_amounts_use_the_currency_exponent() -> None:
    obj = {**session(amount=60000, currency="jpy")}
    decision = decide(invoice(currency="JPY", minor=60000), report_from_event(event("checkout.session.completed", obj)))
    assert decision.changes["payment"]["amount"] == "60000" and decision.changes["payment"]["currency"] == "JPY"
    assert not any(c["type"] == "AmountMismatch" for c in decision.changes["conditions"])


def test_same_event_twice_is_a_duplicate() -> None:
    report = report_from_event(event("checkout.session.completed", session()))
    assert decide(invoice(processedEvents=["evt_1"]), report, T).outcome == "duplicate"


def test_second_success_event_of_the_same_payment_is_a_duplicate() -> None:
    paid = invoice("Paid", payment={"providerPaymentId": "pi_1"}, processedEvents=["evt_1"])
    report = report_from_event(event("payment_intent.succeeded", intent(), "evt_2"))
    decision = decide(paid, report, T)
    assert decision.outcome == "duplicate" and decision.changes is None


def test_failure_after_paid_never_downgrades() -> None:
    paid = invoice("Paid", payment={"providerPaymentId": "pi_1"})
    report = report_from_event(event("payment_intent.payment_failed", intent(error={"message": "x"}), "evt_9"))
    assert decide(paid, report, T).outcome == "ignored"


def test_amount_mismatch_is_paid_but_flagged() -> None:
    decision = decide(invoice(), report_from_event(event("checkout.session.completed", session(amount=100))), T)
    assert decision.changes["phase"] == "Paid"
    assert any(c["type"] == "AmountMismatch" and c["status"] == "True" for c in decision.changes["conditions"])
    assert any(reason == "AmountMismatch" for _, reason, _ in decision.events)


@pytest.mark.parametrize("type_", ["charge.succeeded", "payment_link.created", "customer.created"])
def test_other_types_are_not_payment_reports(type_: str) -> None:
    assert report_from_event(event(type_, {"id": "x", "metadata": META})) is None


def test_malformed_events_are_not_reports() -> None:
    assert report_from_event({"type": "checkout.session.completed"}) is None
    assert report_from_event({"id": "evt", "type": "checkout.session.completed", "data": {"object": "x"}}) is None
    weird = session()
    weird["metadata"] = {"invoice_id": 12, "invoice_uid": ["a"]}
    report = report_from_event(event("checkout.session.completed", weird))
    assert report.invoice_id is None and report.invoice_uid is None


def test_match_refuses_another_integration_or_object() -> None:
    report = report_from_event(event("checkout.session.completed", session()))
    assert match_problem(invoice(), report, "team-a", "prod") is None
    assert "another integration" in match_problem(invoice(), report, "team-a", "other")
    replaced = invoice()
    replaced["metadata"]["uid"] = "uid-2"
    assert "not the one" in match_problem(replaced, report, "team-a", "prod")
    assert "another namespace" in match_problem(invoice(), report, "team-b", "prod")
