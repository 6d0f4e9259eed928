"""Receipts and a hand-made endpoint's subscriptions, tested as data: the receipt email, when one is owed, and the
``MissingEvents`` condition for the endpoints Stripe lists."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from fluxrate.models import AFTER_PAYMENT_EVENTS, DEFAULT_ENABLED_EVENTS, PAYMENT_EVENTS, InvoiceSpec, endpoint_events
from fluxrate.operator.integrations.subscriptions import missing_events
from fluxrate.operator.invoices.receipts import RECEIPT_WINDOW, receipt_state
from fluxrate.operator.receipt_email import (
    PaymentDetails,
    build_receipt_email,
    payment_details,
    payment_method_text,
    receipt_message_id,
)
from fluxrate.operator.schedule import needs_reconciliation

from .manifests import example

NOW = dt.datetime(2026, 11, 3, 14, 5, tzinfo=dt.UTC)
URL = "https://billing.example.com/api/v1/webhooks/stripe/team-a/prod"


def spec(currency: str = "USD") -> InvoiceSpec:
    return InvoiceSpec.model_validate(example("Invoice", currency)["spec"])


def paid(phase: str = "Paid", *, ago: dt.timedelta = dt.timedelta(minutes=5), receipt: dict[str, Any] | None = None,
         payment_id: str = "pi_123") -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase, "payment": {
        "providerPaymentId": payment_id, "amount": "236.50", "amountMinor": 23650, "currency": "USD",
        "paidAt": (NOW - ago).strftime("%Y-%m-%dT%H:%M:%SZ"), "source": "webhook"}}
    if receipt is not None:
        status["receipt"] = receipt
    return status


# --- when a receipt is owed -----------------------------------------------------------------------------------


def test_a_recent_payment_is_owed_a_receipt_until_it_is_sent_or_skipped() -> None:
    assert receipt_state(paid(), NOW) == "send"
    assert receipt_state(paid(receipt={"paymentId": "pi_123", "attempts": 2}), NOW) == "retry"
    assert receipt_state(paid(receipt={"paymentId": "pi_123", "sentAt": "2026-11-03T14:01:00Z"}), NOW) is None
    assert receipt_state(paid(receipt={"paymentId": "pi_123", "skipped": "ReceiptsDisabled"}), NOW) is None
    # a record about another payment is not this payment's receipt
    assert receipt_state(paid(receipt={"paymentId": "pi_other", "sentAt": "2026-11-01T00:00:00Z"}), NOW) == "send"


def test_an_old_payment_gets_no_receipt_and_costs_no_schedule() -> None:
    old = paid(ago=RECEIPT_WINDOW + dt.timedelta(minutes=1))
    assert receipt_state(old, NOW) is None
    assert not needs_reconciliation(old, NOW)
    assert receipt_state(paid(ago=RECEIPT_WINDOW - dt.timedelta(minutes=1)), NOW) == "send"
    assert needs_reconciliation(paid(), NOW)  # kept scheduled until the receipt is sent or skipped
    assert not needs_reconciliation(paid(receipt={"paymentId": "pi_123", "sentAt": "2026-11-03T14:01:00Z"}), NOW)
    # tries that failed for longer than the window are given up (recorded, which ends the schedule)
    failing = paid(ago=RECEIPT_WINDOW + dt.timedelta(hours=1), receipt={"paymentId": "pi_123", "attempts": 9})
    assert receipt_state(failing, NOW) == "expire"


@pytest.mark.parametrize("phase", ["Refunded", "Open", "Void", "Draft"])
def test_only_a_paid_invoice_gets_a_receipt(phase: str) -> None:
    assert receipt_state(paid(phase), NOW) is None
    assert receipt_state(paid(phase, receipt={"paymentId": "pi_123", "attempts": 1}), NOW) is None


def test_no_payment_or_unreadable_time_is_no_receipt() -> None:
    assert receipt_state({"phase": "Paid"}, NOW) is None
    broken = paid()
    broken["payment"]["paidAt"] = "yesterday"
    assert receipt_state(broken, NOW) is None


# --- the receipt email ------------------------------------------------------------------------------------------


def test_receipt_email_has_amount_date_method_url_and_a_stable_message_id() -> None:
    payment = paid()["payment"]
    url = "https://pay.stripe.com/receipts/payment/CAcaFwoVYWNjdF8x"
    message = build_receipt_email(name="inv-1", uid="uid-1", spec=spec(), payment=payment,
                                  details=PaymentDetails("Visa ending 4242", url), from_address="billing@x.example")
    assert message["Message-ID"] == "<receipt.pi_123.uid-1@fluxrate.invoice>" == receipt_message_id("pi_123", "uid-1")
    assert message["Subject"] == "Receipt for invoice inv-1: 236.50 USD paid"
    assert message["To"] == "ACME Corp <billing@acme.example>"
    plain = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    for body in (plain, html):
        assert "236.50 USD" in body and "3 November 2026, 14:00 UTC" in body
        assert "Visa ending 4242" in body and url in body


def test_receipt_email_without_details_and_in_yen() -> None:
    payment = {"providerPaymentId": "evt_1", "amountMinor": 60000, "currency": "JPY", "paidAt": "2026-11-03T09:30:00Z"}
    message = build_receipt_email(name="jpy-1", uid="u", spec=spec("JPY"), payment=payment, details=PaymentDetails(),
                                  from_address="billing@x.example")
    plain = message.get_body(("plain",)).get_content()
    assert "60000 JPY" in plain  # no minor units: not 600.00
    assert "Payment method" not in plain and "https://" not in plain


@pytest.mark.parametrize(("details", "text"), [
    ({"type": "card", "card": {"brand": "visa", "last4": "4242"}}, "Visa ending 4242"),
    ({"type": "card", "card": {"brand": "amex", "last4": "0005", "wallet": {"type": "apple_pay"}}},
     "American Express ending 0005 (Apple Pay)"),
    ({"type": "us_bank_account", "us_bank_account": {"bank_name": "STRIPE TEST BANK", "last4": "6789"}},
     "US bank account ending 6789"),
    ({"type": "sepa_debit", "sepa_debit": {"last4": "3000"}}, "SEPA Direct Debit account ending 3000"),
    ({"type": "ideal", "ideal": {"bank": "ing"}}, "iDEAL"),
    ({"type": "some_new_method", "some_new_method": {}}, "some new method"),
    ({}, None),
    (None, None),
])
def test_payment_method_as_the_customer_knows_it(details: dict[str, Any] | None, text: str | None) -> None:
    assert payment_method_text(details) == text


def test_details_only_from_an_expanded_charge() -> None:
    charge = {"id": "ch_1", "receipt_url": "https://pay.stripe.com/receipts/payment/abc",
              "payment_method_details": {"type": "card", "card": {"brand": "visa", "last4": "4242"}}}
    assert payment_details({"id": "pi_1", "latest_charge": charge}) == PaymentDetails(
        "Visa ending 4242", "https://pay.stripe.com/receipts/payment/abc")
    assert payment_details({"id": "pi_1", "latest_charge": "ch_1"}) == PaymentDetails()
    assert payment_details({"id": "pi_1", "latest_charge": None}) == PaymentDetails()


# --- MissingEvents ---------------------------------------------------------------------------------------------


def endpoint(events: list[str], url: str = URL, status: str = "enabled", id_: str = "we_1") -> dict[str, Any]:
    return {"id": id_, "url": url, "enabled_events": events, "status": status}


def test_an_integration_stored_with_the_old_seven_still_needs_the_after_payment_types() -> None:
    required = endpoint_events(list(PAYMENT_EVENTS))
    assert sorted(required) == sorted(DEFAULT_ENABLED_EVENTS)
    assert endpoint_events(list(DEFAULT_ENABLED_EVENTS)) == list(DEFAULT_ENABLED_EVENTS)


def test_missing_refund_events_are_named_with_where_to_tick_them() -> None:
    required = endpoint_events(list(PAYMENT_EVENTS))
    ticked = [*PAYMENT_EVENTS, "charge.dispute.created", "charge.dispute.updated", "charge.dispute.closed",
              "charge.dispute.funds_withdrawn", "charge.dispute.funds_reinstated"]
    condition = missing_events([endpoint(ticked), endpoint(["*"], url="https://elsewhere.example/x", id_="we_2")],
                               URL, required)
    assert (condition.type, condition.status, condition.reason) == ("MissingEvents", "True", "EventsNotEnabled")
    assert "Developers > Webhooks > we_1" in condition.message
    for missing in ("charge.refunded", "refund.created", "refund.updated", "refund.failed"):
        assert missing in condition.message
    assert "charge.dispute.created" not in condition.message and "we_2" not in condition.message


def test_every_event_enabled_or_a_wildcard_is_false() -> None:
    required = list(DEFAULT_ENABLED_EVENTS)
    assert missing_events([endpoint(required)], URL, required).reason == "AllEventsEnabled"
    assert missing_events([endpoint(["*"])], URL, required).status == "False"
    # two endpoints for the URL: Stripe sends each event to both, so together they cover it
    split = [endpoint(list(PAYMENT_EVENTS)), endpoint(list(AFTER_PAYMENT_EVENTS), id_="we_2")]
    assert missing_events(split, URL, required).status == "False"


def test_no_endpoint_or_only_a_disabled_one() -> None:
    required = list(DEFAULT_ENABLED_EVENTS)
    absent = missing_events([endpoint(["*"], url="https://elsewhere.example/x")], URL, required)
    assert (absent.status, absent.reason) == ("Unknown", "EndpointNotFound")
    assert URL in absent.message and "charge.refunded" in absent.message
    disabled = missing_events([endpoint(required, status="disabled")], URL, required)
    assert (disabled.status, disabled.reason) == ("True", "EndpointDisabled")
