"""BillingMetrics as data: invoice and integration bodies in, Prometheus exposition out."""

from __future__ import annotations

import sys
import tracemalloc
from typing import Any

import pytest
import stripe
from prometheus_client.parser import text_string_to_metric_families

from fluxrate.invoice_status import NEXT_PHASES
from fluxrate.operator.metrics import STRIPE_OUTCOMES, BillingMetrics, InvoiceFacts, stripe_outcome


def invoice(phase: str | None, minor: int = 0, currency: str = "USD", *, refunded: int = 0, overdue: bool = False,
            dispute: str | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"amountDue": {"minor": minor, "amount": "x", "currency": currency, "display": "x"}}
    if phase is not None:
        status["phase"] = phase
    if refunded:
        status["amountRefunded"] = {"minor": refunded, "amount": "x", "currency": currency, "display": "x"}
    if overdue:
        status["conditions"] = [{"type": "Ready", "status": "False"},
                                {"type": "Overdue", "status": "True", "reason": "PastDue"}]
    if dispute is not None:
        status["dispute"] = {"id": "du_1", "status": dispute, "amountMinor": minor}
    return {"metadata": {"namespace": "team-a", "name": "inv"}, "spec": {"currency": currency}, "status": status}


def samples(metrics: BillingMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The exposition as text, parsed back: {(sample name, sorted labels): value}, without _created."""
    body, content_type = metrics.exposition()
    assert content_type.startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode()) for s in family.samples
            if not s.name.endswith("_created")}


def value(metrics: BillingMetrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, tuple(sorted(labels.items()))))


def test_every_phase_and_stripe_outcome_is_exported_from_the_start_at_zero() -> None:
    found = samples(BillingMetrics())
    assert {labels[0][1] for name, labels in found if name == "fluxrate_invoices"} == set(NEXT_PHASES)
    assert all(v == 0 for (name, _), v in found.items())
    assert {labels[0][1] for name, labels in found if name == "fluxrate_stripe_requests_total"} == set(STRIPE_OUTCOMES)
    assert found[("fluxrate_invoices_overdue", ())] == 0 and found[("fluxrate_disputes_open", ())] == 0


def test_invoices_by_phase_and_outstanding_follow_phase_moves_and_deletion() -> None:
    m = BillingMetrics()
    m.update_invoice("team-a", "a", invoice(None, 23650))  # created, not handled yet: in no count
    assert all(value(m, "fluxrate_invoices", phase=phase) == 0 for phase in NEXT_PHASES)
    m.update_invoice("team-a", "a", invoice("Draft", 23650))
    m.update_invoice("team-a", "b", invoice("Open", 1000, "EUR"))
    assert value(m, "fluxrate_invoices", phase="Draft") == 1
    assert value(m, "fluxrate_invoices_outstanding_minor", currency="USD") is None  # a Draft is not billed yet
    m.update_invoice("team-a", "a", invoice("Finalized", 23650))
    m.update_invoice("team-a", "a", invoice("Open", 23650))
    m.update_invoice("team-a", "a", invoice("Open", 23650))  # a redelivered event counts once
    assert value(m, "fluxrate_invoices", phase="Draft") == 0
    assert value(m, "fluxrate_invoices", phase="Open") == 2
    assert value(m, "fluxrate_invoices_outstanding_minor", currency="USD") == 23650
    assert value(m, "fluxrate_invoices_outstanding_minor", currency="EUR") == 1000
    m.update_invoice("team-a", "a", invoice("Paid", 23650))
    assert value(m, "fluxrate_invoices", phase="Paid") == 1
    assert value(m, "fluxrate_invoices_outstanding_minor", currency="USD") == 0  # stays, at 0: a stable series
    m.update_invoice("team-a", "b", None)  # deleted
    m.update_invoice("team-a", "never-seen", None)
    assert value(m, "fluxrate_invoices", phase="Open") == 0
    assert value(m, "fluxrate_invoices_outstanding_minor", currency="EUR") == 0
    assert len(m) == 1  # "a" (Paid) alone is kept


@pytest.mark.parametrize(("phase", "outstanding"), [("Draft", 0), ("Finalized", 500), ("Open", 500), ("Failed", 0),
                                                    ("Void", 0), ("Paid", 0), ("Refunded", 0)])
def test_outstanding_is_the_amount_due_of_finalized_and_open_invoices(phase: str, outstanding: int) -> None:
    m = BillingMetrics()
    m.update_invoice("team-a", "a", invoice(phase, 500))
    assert (value(m, "fluxrate_invoices_outstanding_minor", currency="USD") or 0) == outstanding


def test_refunded_overdue_and_open_disputes() -> None:
    m = BillingMetrics()
    m.update_invoice("team-a", "a", invoice("Paid", 10000, refunded=2500))
    m.update_invoice("team-b", "a", invoice("Open", 700, "JPY", overdue=True))
    m.update_invoice("team-a", "c", invoice("Paid", 900, dispute="needs_response"))
    assert value(m, "fluxrate_invoices_refunded_minor", currency="USD") == 2500
    assert value(m, "fluxrate_invoices_overdue") == 1
    assert value(m, "fluxrate_disputes_open") == 1
    m.update_invoice("team-a", "a", invoice("Refunded", 10000, refunded=10000))
    m.update_invoice("team-a", "c", invoice("Refunded", 900, refunded=900, dispute="lost"))
    m.update_invoice("team-b", "a", invoice("Paid", 700, "JPY"))  # paid: no longer overdue
    assert value(m, "fluxrate_invoices_refunded_minor", currency="USD") == 10900
    assert value(m, "fluxrate_invoices", phase="Refunded") == 2
    assert (value(m, "fluxrate_invoices_overdue"), value(m, "fluxrate_disputes_open")) == (0, 0)
    for closed in ("won", "warning_closed", "prevented"):
        m.update_invoice("team-a", "d", invoice("Paid", 5, dispute="warning_needs_response"))
        assert value(m, "fluxrate_disputes_open") == 1
        m.update_invoice("team-a", "d", invoice("Paid", 5, dispute=closed))
        assert value(m, "fluxrate_disputes_open") == 0


def test_amounts_are_exact_integers_and_odd_values_never_become_labels_or_money() -> None:
    m = BillingMetrics()
    big = 2**53 - 1  # the largest integer a float64 sample holds exactly
    m.update_invoice("team-a", "a", invoice("Open", big - 10))
    m.update_invoice("team-a", "b", invoice("Open", 10))
    exported = value(m, "fluxrate_invoices_outstanding_minor", currency="USD")
    assert exported is not None and int(exported) == big  # the text exposition parsed back: not rounded
    odd = invoice("Open", 10, currency="not-a-currency")
    odd["spec"]["currency"] = "sk_live_x"
    m.update_invoice("team-a", "c", odd)
    odd = invoice("Open")
    odd["status"]["amountDue"]["minor"] = "10.5"  # never a float or a string amount
    odd["status"]["phase"] = {"not": "a phase"}
    m.update_invoice("team-a", "d", odd)
    currencies = {labels for name, labels in samples(m) if name == "fluxrate_invoices_outstanding_minor"}
    assert currencies == {(("currency", "USD"),)}
    assert value(m, "fluxrate_invoices", phase="Open") == 3


def test_integration_ready_follows_its_ready_condition_and_deletion() -> None:
    m = BillingMetrics()
    ready = {"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Connected"}]}}
    m.update_integration("team-a", "prod", ready)
    m.update_integration("team-b", "prod", {"status": {"conditions": [{"type": "Ready", "status": "False"}]}})
    m.update_integration("team-c", "new", {"metadata": {}})  # no status yet: not Ready
    assert value(m, "fluxrate_integration_ready", namespace="team-a", integration="prod") == 1
    assert value(m, "fluxrate_integration_ready", namespace="team-b", integration="prod") == 0
    assert value(m, "fluxrate_integration_ready", namespace="team-c", integration="new") == 0
    m.update_integration("team-a", "prod", None)
    assert value(m, "fluxrate_integration_ready", namespace="team-a", integration="prod") is None


@pytest.mark.parametrize(("exc", "outcome"), [
    (None, "ok"),
    (stripe.AuthenticationError("Invalid API Key provided: sk_test_****1234", http_status=401),
     "authentication_error"),
    (stripe.PermissionError("The provided key does not have access", http_status=403), "authentication_error"),
    (stripe.RateLimitError("Too many requests", http_status=429), "rate_limited"),
    (stripe.InvalidRequestError("No such payment_link", "id", http_status=404), "invalid_request"),
    (stripe.CardError("declined", None, "card_declined", http_status=402), "invalid_request"),
    (stripe.IdempotencyError("Keys for idempotent requests", http_status=400), "invalid_request"),
    (stripe.APIError("Something went wrong", http_status=500), "api_error"),
    (stripe.StripeError("bad gateway", http_status=502), "api_error"),
    (stripe.APIConnectionError("Could not connect"), "connection_error"),
    (TimeoutError(), "connection_error"),
])
def test_each_stripe_error_class_has_its_outcome(exc: BaseException | None, outcome: str) -> None:
    assert stripe_outcome(exc) == outcome
    m = BillingMetrics()
    m.observe_stripe_request(exc)
    m.observe_stripe_request(exc)
    assert value(m, "fluxrate_stripe_requests_total", outcome=outcome) == 2
    assert "sk_test" not in m.exposition()[0].decode()


async def test_the_stripe_call_wrapper_counts_each_request_once_by_outcome() -> None:
    from aiolimiter import AsyncLimiter

    from fluxrate.operator.stripe_clients import IntegrationClient

    m = BillingMetrics()
    entry = IntegrationClient(client=object(), limiter=AsyncLimiter(100, 1), mode="test", fingerprint="f",  # type: ignore[arg-type]
                              observe=m.observe_stripe_request)

    async def ok(_: Any) -> str:
        return "done"

    async def refused(_: Any) -> str:
        raise stripe.AuthenticationError("Invalid API Key provided", http_status=401)

    assert await entry.call(ok) == "done"
    with pytest.raises(stripe.AuthenticationError):
        await entry.call(refused)
    assert value(m, "fluxrate_stripe_requests_total", outcome="ok") == 1
    assert value(m, "fluxrate_stripe_requests_total", outcome="authentication_error") == 1


def test_memory_is_one_small_tuple_per_invoice_and_exposition_does_not_grow_with_invoices() -> None:
    m = BillingMetrics()
    count = 10_000
    bodies = [invoice(("Open", "Paid", "Draft")[i % 3], 1000 + i, ("USD", "EUR")[i % 2], overdue=i % 7 == 0)
              for i in range(count)]
    for i, body in enumerate(bodies[:100]):
        m.update_invoice("team-a", f"inv-{i:06d}", body)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i, body in enumerate(bodies[100:], start=100):
        m.update_invoice("team-a", f"inv-{i:06d}", body)
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    per_invoice = grown / (count - 100)
    # a "namespace/name" key, a 6-tuple of interned strings, ints and bools, and a dict slot; no body kept
    assert per_invoice < 400, per_invoice
    facts = m._invoices["team-a/inv-000004"]
    assert isinstance(facts, InvoiceFacts) and facts.phase is sys.intern("Paid") and facts.currency == "USD"
    assert value(m, "fluxrate_invoices_overdue") == len(range(0, count, 7))
    assert len(samples(m)) < 40  # one sample per label set, whatever the number of invoices
