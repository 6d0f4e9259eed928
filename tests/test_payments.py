"""Payment reports and their effect on an invoice, as data (no server)."""

import datetime as dt
from typing import Any

import pytest

from fluxrate import api_versions
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


def test_paying_an_overdue_invoice_ends_overdue_in_the_same_write() -> None:
    overdue = {"type": "Overdue", "status": "True", "reason": "PastDue", "message": "Past due.",
               "lastTransitionTime": "2026-11-20T00:00:00Z"}
    report = report_from_event(event("checkout.session.completed", session()))
    decision = decide(invoice(conditions=[overdue]), report, T)
    assert decision.changes is not None and decision.changes["phase"] == "Paid"
    [ended] = [c for c in decision.changes["conditions"] if c["type"] == "Overdue"]
    assert (ended["status"], ended["reason"], ended["message"]) == ("False", "Paid", "Paid on 2026-11-27T12:00:00Z.")
    assert ended["lastTransitionTime"] == "2026-11-27T12:00:00Z"


def test_paying_an_invoice_that_is_not_overdue_adds_no_overdue_condition() -> None:
    decision = decide(invoice(), report_from_event(event("checkout.session.completed", session())), T)
    assert decision.changes is not None
    assert [c["type"] for c in decision.changes["conditions"]] == ["Ready"]


def test_a_payment_event_for_a_refunded_invoice_is_a_duplicate_never_paid_again() -> None:
    refunded = invoice("Refunded", payment={"providerPaymentId": "pi_1"}, processedEvents=["evt_1"])
    decision = decide(refunded, report_from_event(event("payment_intent.succeeded", intent(), "evt_2")), T)
    assert decision.outcome == "duplicate" and decision.changes is None


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


# --- API versions: every shape fluxrate's events have had since 2020-08-27 ------------------------------------

PRE_BASIL, BASIL, SDK = "2024-06-20", "2025-03-31.basil", api_versions.SDK_VERSION


def versioned(type_: str, obj: dict[str, Any], version: str, event_id: str = "evt_1") -> dict[str, Any]:
    return {**event(type_, obj, event_id), "api_version": version}


def legacy_invoice(**fields: Any) -> dict[str, Any]:
    """An invoice as API versions before 2025-03-31.basil render it: it names its PaymentIntent."""
    return {"id": "in_1", "object": "invoice", "amount_due": 23650, "amount_paid": 23650, "currency": "usd",
            "metadata": META, "status": "paid", "paid": True, "payment_intent": "pi_1", "charge": "ch_1",
            "subscription": None, **fields}


def basil_invoice(**fields: Any) -> dict[str, Any]:
    """From 2025-03-31.basil on: no payment_intent, charge or paid; payments only when expanded."""
    return {"id": "in_1", "object": "invoice", "amount_due": 23650, "amount_paid": 23650, "currency": "usd",
            "metadata": META, "status": "paid", "parent": None, **fields}


def invoice_payment(**fields: Any) -> dict[str, Any]:
    """Stripe's InvoicePayment (the invoice_payment.paid event's object): no metadata."""
    return {"id": "inpay_1", "object": "invoice_payment", "amount_paid": 23650, "amount_requested": 23650,
            "created": 1391288554, "currency": "usd", "invoice": "in_1", "is_default": True, "livemode": False,
            "payment": {"type": "payment_intent", "payment_intent": "pi_1"}, "status": "paid",
            "status_transitions": {"canceled_at": None, "paid_at": 1391288554}, **fields}


EXPANDED_PAYMENTS = {"object": "list", "has_more": False, "url": "/v1/invoice_payments",
                     "data": [invoice_payment(id="inpay_0", status="canceled",
                                              payment={"type": "payment_intent", "payment_intent": "pi_0"}),
                              invoice_payment()]}


@pytest.mark.parametrize(
    ("version", "type_", "obj", "kind", "payment_id", "amount"),
    [
        *[(v, "checkout.session.completed", session(), "succeeded", "pi_1", 23650) for v in (PRE_BASIL, BASIL, SDK)],
        *[(v, "payment_intent.succeeded", intent(), "succeeded", "pi_1", 23650) for v in (PRE_BASIL, BASIL, SDK)],
        ("2020-08-27", "invoice.payment_succeeded", legacy_invoice(), "succeeded", "pi_1", 23650),
        (PRE_BASIL, "invoice.payment_succeeded", legacy_invoice(), "succeeded", "pi_1", 23650),
        (PRE_BASIL, "invoice.payment_succeeded", legacy_invoice(payment_intent={"id": "pi_1"}), "succeeded", "pi_1",
         23650),
        (PRE_BASIL, "invoice.payment_failed", legacy_invoice(amount_paid=0, paid=False, status="open"), "failed",
         "pi_1", 23650),
        (BASIL, "invoice.payment_succeeded", basil_invoice(), "succeeded", None, 23650),
        (BASIL, "invoice.payment_succeeded", basil_invoice(payments=EXPANDED_PAYMENTS), "succeeded", "pi_1", 23650),
        (BASIL, "invoice.payment_failed", basil_invoice(amount_paid=0, status="open"), "failed", None, 23650),
        (BASIL, "invoice_payment.paid", invoice_payment(), "succeeded", "pi_1", 23650),
        (SDK, "invoice.payment_succeeded", basil_invoice(), "succeeded", None, 23650),
        (SDK, "invoice_payment.paid", invoice_payment(), "succeeded", "pi_1", 23650),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_every_version_reads_to_the_payment_intent_never_the_invoice_id(
    version: str, type_: str, obj: dict[str, Any], kind: str, payment_id: str | None, amount: int
) -> None:
    report = report_from_event(versioned(type_, obj, version))
    assert report is not None and api_versions.readable(version)
    assert (report.kind, report.provider_payment_id, report.amount_minor) == (kind, payment_id, amount)
    assert report.provider_payment_id != "in_1"
    if type_.startswith("invoice"):
        assert report.stripe_invoice_id == "in_1"


def test_an_invoice_payment_has_no_metadata_so_it_names_no_fluxrate_invoice() -> None:
    report = report_from_event(versioned("invoice_payment.paid", invoice_payment(), BASIL))
    assert report is not None and report.invoice_id is None


@pytest.mark.parametrize("version", [PRE_BASIL, BASIL, SDK])
def test_checkout_then_invoice_event_of_one_payment_is_no_second_payment(version: str) -> None:
    invoice_obj = legacy_invoice() if version == PRE_BASIL else basil_invoice()
    paid = decide(invoice(), report_from_event(versioned("checkout.session.completed", session(), version)), T)
    after = invoice(**paid.changes)
    decision = decide(after, report_from_event(versioned("invoice.payment_succeeded", invoice_obj, version, "evt_2")),
                      T)
    assert decision.outcome == "duplicate"
    assert not [e for e in decision.events if e[1] == "SecondPayment"]


def test_a_basil_invoice_event_first_records_the_payment_that_the_next_event_names() -> None:
    first = decide(invoice(), report_from_event(versioned("invoice.payment_succeeded", basil_invoice(), BASIL)), T)
    assert first.outcome == "applied" and first.changes["payment"]["providerPaymentId"] == "evt_1"
    named = decide(invoice(**first.changes),
                   report_from_event(versioned("payment_intent.succeeded", intent(), BASIL, "evt_2")), T)
    assert named.outcome == "duplicate" and not named.events
    assert named.changes["payment"]["providerPaymentId"] == "pi_1"
    # a really different payment afterwards is still caught
    other = decide(invoice(**{**first.changes, **named.changes}),
                   report_from_event(versioned("payment_intent.succeeded", {**intent(), "id": "pi_2"}, BASIL, "evt_3")),
                   T)
    assert [e[1] for e in other.events] == ["SecondPayment"]


@pytest.mark.parametrize(
    ("version", "readable"),
    [
        ("2020-08-27", True), ("2022-11-15", True), (PRE_BASIL, True), ("2024-09-30.acacia", True), (BASIL, True),
        ("2025-09-30.clover", True), (SDK, True),
        ("2019-12-03", False), ("2017-08-15", False), ("not-a-version", False), ("2025-02-30.basil", False),
    ],
)
def test_readable_versions(version: str, readable: bool) -> None:
    assert api_versions.readable(version) is readable


def test_later_versions_of_the_sdks_release_are_readable_a_later_release_is_not() -> None:
    sdk = "2026-10-28.endive"
    assert api_versions.readable("2026-12-16.endive", sdk)
    assert not api_versions.readable("2027-03-31.fig", sdk)
    assert api_versions.readable("2026-08-26.dahlia", sdk)


def test_version_condition_names_the_fix() -> None:
    now = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
    seen = [{"apiVersion": "2019-12-03", "readable": False, "count": 3, "lastSeen": "2026-11-27T11:00:00Z"},
            {"apiVersion": BASIL, "readable": True, "count": 9, "lastSeen": "2026-11-26T11:00:00Z"}]
    hand_made = api_versions.condition(seen, managed=False, url="https://x/api", now=now)
    assert (hand_made.status, hand_made.reason) == ("False", "UnreadableApiVersion")
    assert f"--api-version {api_versions.SDK_VERSION}" in hand_made.message and "managed: true" in hand_made.message
    managed = api_versions.condition(seen, managed=True, now=now)
    assert "nothing to do" in managed.message
    later = api_versions.condition(seen, managed=False, now=now + dt.timedelta(days=2))
    assert (later.status, later.reason) == ("True", "Readable") and BASIL in later.message
    assert api_versions.condition([], managed=False, now=now) is None
