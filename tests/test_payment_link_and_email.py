"""What the operator sends to Stripe and to the customer, tested as data."""

import pytest

from fluxrate.invoice_status import can_move
from fluxrate.models import AfterCompletion, InvoiceSpec
from fluxrate.operator.email import build_invoice_email, message_id
from fluxrate.operator.payment_links import build_payment_link_params, payment_link_idempotency_key

from .manifests import example


def spec(currency: str = "USD") -> InvoiceSpec:
    return InvoiceSpec.model_validate(example("Invoice", currency)["spec"])


def test_usd_link_params_in_minor_units_with_both_metadata_blocks() -> None:
    params = build_payment_link_params("team-a", "inv-1", "uid-1", spec("USD"), AfterCompletion(message="Thanks!"))
    assert params["line_items"] == [
        {"price_data": {"currency": "usd", "product_data": {"name": "Platform subscription (November)"},
                        "unit_amount": 19900}, "quantity": 1},
        {"price_data": {"currency": "usd", "product_data": {"name": "Extra seats"}, "unit_amount": 1250},
         "quantity": 3},
    ]
    metadata = {"invoice_id": "inv-1", "customer_id": "cus-acme", "namespace": "team-a", "invoice_uid": "uid-1"}
    assert params["metadata"] == metadata
    assert params["payment_intent_data"] == {"metadata": metadata}
    assert params["restrictions"] == {"completed_sessions": {"limit": 1}}
    assert params["after_completion"] == {"type": "hosted_confirmation",
                                          "hosted_confirmation": {"custom_message": "Thanks!"}}


def test_jpy_amounts_are_not_scaled() -> None:
    params = build_payment_link_params("ns", "inv-2", "uid-2", spec("JPY"), AfterCompletion())
    assert params["line_items"][0]["price_data"] == {
        "currency": "jpy", "product_data": {"name": "Consulting (hours)"}, "unit_amount": 15000}


def test_redirect_after_completion() -> None:
    after = AfterCompletion(type="redirect", redirectURL="https://example.com/thanks")
    params = build_payment_link_params("ns", "n", "u", spec(), after)
    assert params["after_completion"] == {"type": "redirect", "redirect": {"url": "https://example.com/thanks"}}


def test_idempotency_key_depends_only_on_the_invoice_uid() -> None:
    assert payment_link_idempotency_key("uid-1") == payment_link_idempotency_key("uid-1")
    assert payment_link_idempotency_key("uid-1") != payment_link_idempotency_key("uid-2")


def test_email_has_summary_link_and_both_parts() -> None:
    message = build_invoice_email(name="inv-1", uid="uid-1", spec=spec(), link_id="plink_1",
                                  link_url="https://buy.stripe.com/test_abc", from_address="billing@example.com")
    assert message["To"] == "ACME Corp <billing@acme.example>"
    assert message["Subject"] == "Invoice inv-1: 236.50 USD due"
    assert message["Message-ID"] == message_id("plink_1", "uid-1")
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    for body in (text, html):
        assert "https://buy.stripe.com/test_abc" in body
        assert "236.50 USD" in body and "2026-12-15" in body
    assert "3 x Extra seats: 37.50 USD" in text


def test_email_escapes_html_from_the_invoice() -> None:
    value = example("Invoice", "USD")["spec"]
    value["lineItems"][0]["description"] = "<script>alert(1)</script>"
    message = build_invoice_email(name="inv-1", uid="u", spec=InvoiceSpec.model_validate(value), link_id="plink_1",
                                  link_url="https://buy.stripe.com/x", from_address="a@b.example")
    html = message.get_body(("html",)).get_content()
    assert "<script>" not in html and "&lt;script&gt;" in html


@pytest.mark.parametrize(
    ("current", "new", "allowed"),
    [("Draft", "Finalized", True), ("Finalized", "Open", True), ("Open", "Paid", True), ("Paid", "Open", False),
     ("Paid", "Finalized", False), ("Paid", "Void", False), ("Open", "Finalized", False), ("Void", "Open", False),
     ("Void", "Paid", True), (None, "Draft", True), ("Open", "Open", True)],
)
def test_phases_only_move_forward(current: str | None, new: str, allowed: bool) -> None:
    assert can_move(current, new) is allowed
