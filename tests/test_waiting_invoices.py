"""Which invoices wait for their integration, as the operator keeps it from watch events (pure data)."""

from __future__ import annotations

from fluxrate.operator.waiting import WaitingInvoices, waits_for

FINALIZED = {"state": "Finalized", "integrationRef": {"name": "prod"}}


def test_only_finalized_invoices_without_a_link_wait() -> None:
    assert waits_for(FINALIZED, {}) == "prod"
    assert waits_for(FINALIZED, {"phase": "Finalized"}) == "prod"
    assert waits_for(FINALIZED, {"paymentLink": {"id": "plink_1"}}) is None
    assert waits_for({**FINALIZED, "state": "Draft"}, {}) is None
    for phase in ("Paid", "Failed", "Void"):
        assert waits_for(FINALIZED, {"phase": phase}) is None


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
