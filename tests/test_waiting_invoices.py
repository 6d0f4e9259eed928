"""Which invoices wait for their integration, as the operator keeps it from watch events (pure data)."""

from __future__ import annotations

import datetime as dt

from fluxrate import conditions as cond
from fluxrate.operator.waiting import WaitingInvoices, waits_for

FINALIZED = {"state": "Finalized", "integrationRef": {"name": "prod"}}


def test_only_finalized_invoices_without_a_link_wait() -> None:
    assert waits_for(FINALIZED, {}) == "prod"
    assert waits_for(FINALIZED, {"phase": "Finalized"}) == "prod"
    assert waits_for(FINALIZED, {"paymentLink": {"id": "plink_1"}}) is None
    assert waits_for({**FINALIZED, "state": "Draft"}, {}) is None
    for phase in ("Paid", "Failed", "Void"):
        assert waits_for(FINALIZED, {"phase": phase}) is None


def test_a_paid_invoice_waits_for_its_integration_until_its_receipt_is_tried() -> None:
    # a restarted operator reads the payment method through the integration: the receipt waits for it to connect
    payment = {"providerPaymentId": "pi_1", "paidAt": cond.timestamp(cond.now() - dt.timedelta(minutes=5))}
    paid = {"phase": "Paid", "paymentLink": {"id": "plink_1"}, "payment": payment}
    assert waits_for(FINALIZED, paid) == "prod"
    assert waits_for(FINALIZED, {**paid, "receipt": {"paymentId": "pi_1", "attempts": 1}}) is None  # tried: retried
    assert waits_for(FINALIZED, {**paid, "receipt": {"paymentId": "pi_1", "sentAt": "2026-12-01T00:00:00Z"}}) is None
    old = {**payment, "paidAt": cond.timestamp(cond.now() - dt.timedelta(days=30))}
    assert waits_for(FINALIZED, {**paid, "payment": old}) is None  # paid long ago: no receipt, nothing to wait for


def test_invoices_are_filed_under_one_integration_and_leave_when_done() -> None:
    waiting = WaitingInvoices()
    waiting.update("ns", "inv-1", "prod")
    waiting.update("ns", "inv-2", "prod")
    waiting.update("other", "inv-1", "prod")
    assert waiting.of("ns", "prod") == {"inv-1", "inv-2"}
    waiting.update("ns", "inv-1", "staging")  # a Draft moved to another integration, then finalized
    assert waiting.of("ns", "prod") == {"inv-2"} and waiting.of("ns", "staging") == {"inv-1"}
    waiting.update("ns", "inv-2", None)  # got its link (or was deleted)
    waiting.update("ns", "inv-1", None)
    assert waiting.of("ns", "prod") == frozenset() and waiting.of("ns", "staging") == frozenset()
    assert waiting.of("other", "prod") == {"inv-1"}
