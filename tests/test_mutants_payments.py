"""Tests that kill mutants `make mutate` found surviving in fluxrate/payments.py (docs/testing.md).

Events are parsed from JSON, as the receiver gets them: their strings and integers are then never the very objects
of the code's literals, so a comparison by identity (``is``) instead of equality fails here as it would in
production."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import typing
from typing import Any

import pytest

from fluxrate import payments
from fluxrate.payments import decide, report_from_event

T = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
META = {"invoice_id": "inv-1", "customer_id": "cus-1", "namespace": "team-a", "invoice_uid": "uid-1"}


def parsed(value: Any) -> Any:
    return json.loads(json.dumps(value))


def invoice(phase: str = "Open", minor: int = 123456, **status: Any) -> dict[str, Any]:
    return parsed({
        "metadata": {"name": "inv-1", "namespace": "team-a", "uid": "uid-1", "generation": 1},
        "spec": {"integrationRef": {"name": "prod"}, "currency": "USD"},
        "status": {"phase": phase, "amountDue": {"minor": minor, "display": f"{minor} USD"}, **status},
    })


def session_event(type_: str, payment_status: str = "paid", amount: int = 123456,
                  event_id: str = "evt_1") -> dict[str, Any]:
    obj = {"id": "cs_1", "object": "checkout.session", "amount_total": amount, "currency": "usd",
           "payment_intent": "pi_1", "payment_status": payment_status, "metadata": META}
    return parsed({"id": event_id, "type": type_, "livemode": False, "data": {"object": obj}})


def report(type_: str, payment_status: str = "paid", **kwargs: Any) -> payments.PaymentReport:
    found = report_from_event(session_event(type_, payment_status, **kwargs))
    assert found is not None
    return found


@pytest.mark.parametrize(
    ("type_", "payment_status", "kind"),
    [
        ("checkout.session.completed", "paid", "succeeded"),
        ("checkout.session.completed", "no_payment_required", "succeeded"),
        ("checkout.session.completed", "unpaid", "pending"),
        ("checkout.session.async_payment_succeeded", "unpaid", "succeeded"),
        ("checkout.session.async_payment_failed", "unpaid", "failed"),
        ("checkout.session.async_payment_failed", "paid", "failed"),
    ],
)
def test_each_checkout_event_type_has_its_own_meaning(type_: str, payment_status: str, kind: str) -> None:
    assert report(type_, payment_status).kind == kind


@pytest.mark.parametrize("type_", ["checkout.session.expired", "checkout.session.created", "payment_intent.created"])
def test_other_checkout_and_intent_events_are_no_report(type_: str) -> None:
    event = session_event(type_, "unpaid")
    assert report_from_event(event) is None


def test_a_payment_keeps_every_event_already_processed() -> None:
    decision = decide(invoice(processedEvents=["evt_a", "evt_z"]), report("checkout.session.completed",
                                                                          event_id="evt_m"), T)
    assert decision.changes["processedEvents"] == ["evt_a", "evt_z", "evt_m"]


def test_the_processed_events_are_bounded_keeping_the_newest() -> None:
    earlier = [f"evt_{n:03d}" for n in range(64)]  # "the last 64 applied event ids" (docs/receiver.md)
    decision = decide(invoice(processedEvents=earlier), report("checkout.session.completed", event_id="evt_new"), T)
    assert decision.changes["processedEvents"] == [*earlier[1:], "evt_new"]
    decision = decide(invoice(processedEvents=earlier[:63]), report("checkout.session.completed",
                                                                    event_id="evt_new"), T)
    assert decision.changes["processedEvents"] == [*earlier[:63], "evt_new"]


def test_an_equal_large_amount_is_no_mismatch() -> None:
    decision = decide(invoice(minor=123456), report("checkout.session.completed", amount=123456), T)
    assert decision.changes["phase"] == "Paid"
    assert [event.reason for event in decision.events] == ["Paid"]
    assert [c["type"] for c in decision.changes["conditions"]] == ["Ready"]


def test_a_payment_for_a_voided_invoice_is_recorded_with_a_warning() -> None:
    decision = decide(invoice("Void"), report("checkout.session.completed"), T)
    assert decision.changes["phase"] == "Paid"
    assert [event.reason for event in decision.events] == ["Paid", "PaidAfterVoid"]


@pytest.mark.parametrize("phase", ["Open", "Draft", "Finalized"])
def test_a_payment_for_an_invoice_not_voided_has_no_void_warning(phase: str) -> None:
    decision = decide(invoice(phase), report("checkout.session.completed"), T)
    assert [event.reason for event in decision.events] == ["Paid"]


def test_a_second_payment_after_one_recorded_by_its_checkout_session_is_a_warning() -> None:
    paid = invoice("Paid", payment={"providerPaymentId": "cs_test_1", "eventId": "evt_1"}, processedEvents=["evt_1"])
    other = dataclasses.replace(report("checkout.session.completed", event_id="evt_9"),
                                provider_payment_id="pi_other", checkout_session_id="cs_other")
    decision = decide(paid, other, T)
    assert [event.reason for event in decision.events] == ["SecondPayment"]
    assert "payment" not in decision.changes


def test_a_delayed_payment_reported_after_its_own_failure_is_not_pending() -> None:
    failed = invoice(lastPaymentError={"providerPaymentId": "pi_1", "eventId": "evt_f"}, processedEvents=["evt_f"])
    decision = decide(failed, report("checkout.session.completed", "unpaid", event_id="evt_p"), T)
    assert decision.changes == {"processedEvents": ["evt_f", "evt_p"]}
    assert decision.reason == "a delayed payment that already failed"


def test_a_delayed_payment_after_another_payments_failure_is_pending() -> None:
    failed = invoice(lastPaymentError={"providerPaymentId": "pi_0", "eventId": "evt_f"}, processedEvents=["evt_f"])
    decision = decide(failed, report("checkout.session.completed", "unpaid", event_id="evt_p"), T)
    assert decision.changes["pendingPayment"]["eventId"] == "evt_p"


def test_a_report_cannot_be_changed() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        report("checkout.session.completed").kind = "failed"  # type: ignore[misc]


@pytest.mark.parametrize(("event_livemode", "object_livemode", "livemode"),
                         [(True, None, True), (False, True, True), (True, False, False), (None, None, None)])
def test_livemode_is_the_objects_else_the_events(event_livemode: bool | None, object_livemode: bool | None,
                                                 livemode: bool | None) -> None:
    event = session_event("checkout.session.completed")
    event["livemode"] = event_livemode
    if object_livemode is not None:
        event["data"]["object"]["livemode"] = object_livemode
    found = report_from_event(event)
    assert found is not None and found.livemode is livemode


@pytest.mark.parametrize("currency", ["eur", "zar"])
def test_a_payment_in_another_currency_is_flagged(currency: str) -> None:
    event = session_event("checkout.session.completed")
    event["data"]["object"]["currency"] = currency
    found = report_from_event(event)
    assert found is not None
    decision = decide(invoice(), found, T)
    assert [event.reason for event in decision.events] == ["Paid", "AmountMismatch"]


def test_a_failure_reported_for_a_voided_invoice_is_recorded() -> None:
    decision = decide(invoice("Void"), report("checkout.session.async_payment_failed"), T)
    assert decision.outcome == "applied"
    assert decision.changes["lastPaymentError"]["eventId"] == "evt_1"


@pytest.mark.parametrize("amount", ["123456", True, 12.5, None])
def test_an_amount_that_is_not_an_integer_is_no_amount(amount: object) -> None:
    event = session_event("checkout.session.completed")
    event["data"]["object"]["amount_total"] = amount
    found = report_from_event(event)
    assert found is not None and found.amount_minor is None
    assert decide(invoice(), found, T).changes["payment"]["amountMinor"] == 0


def test_the_options_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        payments.report_from_object("checkout.session.completed", {}, "evt_1")  # type: ignore[misc]
    with pytest.raises(TypeError):
        payments.invoice_payment_intent({}, True)  # type: ignore[misc]


@pytest.mark.parametrize("type_", ["payment_intent.processing", "payment_intent.requires_action",
                                   "payment_intent.canceled"])
def test_other_payment_intent_events_are_no_report(type_: str) -> None:
    obj = {"id": "pi_1", "object": "payment_intent", "amount": 100, "currency": "usd", "metadata": META}
    assert report_from_event(parsed({"id": "evt_1", "type": type_, "data": {"object": obj}})) is None


@pytest.mark.parametrize("change", [{"id": None}, {"id": ""}, {"type": None}, {"data": {"object": "cs_1"}},
                                    {"data": None}])
def test_an_event_missing_its_id_type_or_object_is_no_report(change: dict[str, Any]) -> None:
    assert report_from_event({**session_event("checkout.session.completed"), **change}) is None


def test_the_payment_is_recorded_in_the_currency_stripe_reports_else_the_invoices() -> None:
    event = session_event("checkout.session.completed")
    event["data"]["object"]["currency"] = "eur"
    found = report_from_event(event)
    assert found is not None and decide(invoice(), found, T).changes["payment"]["currency"] == "EUR"
    del event["data"]["object"]["currency"]
    found = report_from_event(event)
    assert found is not None and decide(invoice(), found, T).changes["payment"]["currency"] == "USD"


@pytest.mark.parametrize("amount", [200000, 100])
def test_more_or_less_than_due_is_flagged(amount: int) -> None:
    decision = decide(invoice(minor=123456), report("checkout.session.completed", amount=amount), T)
    assert [event.reason for event in decision.events] == ["Paid", "AmountMismatch"]


def test_a_second_failure_of_the_same_payment_is_recorded() -> None:
    failed = invoice(lastPaymentError={"providerPaymentId": "pi_1", "eventId": "evt_f"}, processedEvents=["evt_f"])
    decision = decide(failed, report("checkout.session.async_payment_failed", "unpaid", event_id="evt_g"), T)
    assert decision.changes["lastPaymentError"]["eventId"] == "evt_g"


def test_a_payment_recorded_from_an_event_naming_none_is_the_one_a_later_event_names() -> None:
    paid = invoice("Paid", payment={"providerPaymentId": "evt_1", "eventId": "evt_1", "amountMinor": 123456},
                   processedEvents=["evt_1"])
    decision = decide(paid, report("checkout.session.completed", event_id="evt_2"), T)
    assert decision.changes["payment"]["providerPaymentId"] == "pi_1"
    assert decision.events == []


def test_a_report_for_this_very_invoice_matches_in_a_parsed_invoice() -> None:
    assert payments.match_problem(invoice(), report("checkout.session.completed"), "team-a", "prod") is None


def test_a_report_for_another_namespace_does_not_match() -> None:
    found = report("checkout.session.completed")
    assert payments.match_problem(invoice(), found, "team-0", None) == "the payment belongs to another namespace"
    other = dataclasses.replace(found, namespace="team-z")
    assert payments.match_problem(invoice(), other, "team-a", None) == "the payment belongs to another namespace"


def test_the_type_hints_resolve() -> None:
    """Annotations are strings here (``from __future__ import annotations``); tools that read them at run time
    need them to evaluate."""
    for function in (payments.PaymentReport, payments.report_from_object, payments.report_from_event,
                     payments.invoice_payment_intent, payments.decide, payments.match_problem,
                     payments.apply_report, payments._str, payments._int, payments._object_id, payments._payment_id,
                     payments._remember, payments._unidentified, payments._paid, payments._paid_again,
                     payments._not_paid, payments._timestamp):
        assert typing.get_type_hints(function)
