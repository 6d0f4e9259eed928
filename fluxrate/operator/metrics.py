"""Billing metrics of the operator, kept from watch events and served at ``/metrics`` (prometheus-client, on a
registry of its own so several operators can share a process in tests).

No list calls and no per-invoice timers: ``update_invoice`` is called from the invoice watch (``invoice_event``),
stores one small tuple per invoice (never its body) and keeps running totals, so an exposition costs one sample
per label set, not a pass over the invoices.

Amounts are integers in minor units, as everywhere in fluxrate (money is never a float). Prometheus samples are
float64, which represents every integer below 2**53 exactly: 9,007,199,254,740,992 minor units, i.e. about
90 trillion in a two-decimal currency, far beyond the sum of a cluster's invoices in one currency.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import stripe
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from fluxrate.invoice_status import NEXT_PHASES

logger = logging.getLogger(__name__)

PHASES = tuple(NEXT_PHASES)  # every phase, each exported from the start (at 0)
# Money a customer has been asked for and has not paid: a finalized invoice (its link on the way) and an Open one
# (its link sent). Draft is not billed yet, Failed was refused by Stripe and must be voided and reissued (counting
# it would count the corrected invoice twice), Void is cancelled, Paid and Refunded are settled.
OUTSTANDING_PHASES = frozenset({"Finalized", "Open"})
# Stripe's dispute statuses that end a dispute; any other status (needs_response, under_review, ...) is open.
CLOSED_DISPUTE_STATUSES = frozenset({"won", "lost", "warning_closed", "prevented"})
STRIPE_OUTCOMES = ("ok", "authentication_error", "rate_limited", "invalid_request", "api_error", "connection_error")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_PHASE = {phase: phase for phase in PHASES}  # the body's phase string -> the shared constant


class InvoiceFacts(NamedTuple):
    """All the metrics need of one invoice (phase and currency strings are interned: shared, not per invoice)."""

    phase: str | None
    currency: str | None
    outstanding_minor: int
    refunded_minor: int
    overdue: bool
    dispute_open: bool


_NOTHING = InvoiceFacts(None, None, 0, 0, False, False)


def _minor(amount: Any) -> int:
    minor = amount.get("minor") if isinstance(amount, Mapping) else None
    return minor if isinstance(minor, int) and not isinstance(minor, bool) and minor > 0 else 0


def _currency(*amounts: Any) -> str | None:
    for amount in amounts:
        currency = amount.get("currency") if isinstance(amount, Mapping) else None
        if isinstance(currency, str) and _CURRENCY.match(currency.upper()):
            return sys.intern(currency.upper())
    return None  # a bounded label set: nothing that is not a currency code becomes a label value


def _condition_true(status: Mapping[str, Any], type_: str) -> bool:
    return any(isinstance(c, Mapping) and c.get("type") == type_ and c.get("status") == "True"
               for c in status.get("conditions") or [])


def invoice_facts(body: Mapping[str, Any] | None) -> InvoiceFacts:
    """The facts of one invoice body (None: deleted, nothing counted)."""
    if body is None:
        return _NOTHING
    status = body.get("status") or {}
    phase = status.get("phase")
    phase = _PHASE.get(phase) if isinstance(phase, str) else None  # not handled yet (no phase): not counted
    due, refunded = status.get("amountDue"), status.get("amountRefunded")
    dispute = status.get("dispute")
    dispute_status = dispute.get("status") if isinstance(dispute, Mapping) else None
    return InvoiceFacts(
        phase=phase,
        currency=_currency(due, refunded, {"currency": (body.get("spec") or {}).get("currency")}),
        outstanding_minor=_minor(due) if phase in OUTSTANDING_PHASES else 0,
        refunded_minor=_minor(refunded),
        overdue=_condition_true(status, "Overdue"),
        dispute_open=isinstance(dispute_status, str) and dispute_status not in CLOSED_DISPUTE_STATUSES,
    )


def stripe_outcome(exc: BaseException | None) -> str:
    """The ``outcome`` label of one Stripe request (after the SDK's own network retries)."""
    if exc is None:
        return "ok"
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        return "authentication_error"  # the key is wrong, revoked or lacks a permission: a person must act
    if isinstance(exc, stripe.RateLimitError):
        return "rate_limited"
    if isinstance(exc, stripe.APIConnectionError | OSError | TimeoutError):
        return "connection_error"
    status = getattr(exc, "http_status", None)
    if isinstance(exc, stripe.StripeError) and status == 429:
        return "rate_limited"
    if isinstance(exc, stripe.APIError) or (isinstance(status, int) and status >= 500):
        return "api_error"
    if isinstance(exc, stripe.StripeError):
        return "invalid_request"  # InvalidRequestError, CardError, IdempotencyError: Stripe refused the request
    return "api_error"


class _Totals(Collector):
    """Yields the running totals at collect time: one sample per label set."""

    def __init__(self, metrics: BillingMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        phases = GaugeMetricFamily("fluxrate_invoices", "Invoices by status.phase (an invoice not handled yet "
                                   "has no phase and is not counted).", labels=["phase"])
        for phase in PHASES:
            phases.add_metric([phase], m.phases.get(phase, 0))
        yield phases
        yield _by_currency("fluxrate_invoices_outstanding_minor", "Sum of amountDue.minor of Finalized and Open "
                           "invoices, in minor units of the currency.", m.outstanding)
        yield _by_currency("fluxrate_invoices_refunded_minor", "Sum of status.amountRefunded.minor (refunds that "
                           "count and lost disputes), in minor units of the currency.", m.refunded)
        yield GaugeMetricFamily("fluxrate_invoices_overdue", "Invoices whose Overdue condition is True.",
                                value=m.overdue)
        yield GaugeMetricFamily("fluxrate_disputes_open", "Invoices whose latest dispute is not closed (status "
                                "not won, lost, warning_closed or prevented).", value=m.disputes_open)
        ready = GaugeMetricFamily("fluxrate_integration_ready", "1 when the StripeIntegration's Ready condition "
                                  "is True, else 0.", labels=["namespace", "integration"])
        for (namespace, name), is_ready in sorted(m.integrations.items()):
            ready.add_metric([namespace, name], 1 if is_ready else 0)
        yield ready


def _by_currency(name: str, documentation: str, totals: dict[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=["currency"])
    for currency, minor in sorted(totals.items()):
        family.add_metric([currency], minor)  # an int: exact below 2**53 (module docstring)
    return family


def _add(totals: dict[str, int], key: str | None, delta: int) -> None:
    if key is not None and delta:
        totals[key] = totals.get(key, 0) + delta  # a currency seen once stays, at 0: a stable series


class BillingMetrics:
    """Invoice and integration gauges kept from watch events, and the Stripe request counter."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._invoices: dict[str, InvoiceFacts] = {}  # "namespace/name" (a name has no "/") -> facts
        self.phases: dict[str, int] = {}
        self.outstanding: dict[str, int] = {}
        self.refunded: dict[str, int] = {}
        self.overdue = 0
        self.disputes_open = 0
        self.integrations: dict[tuple[str, str], bool] = {}
        self.registry.register(_Totals(self))
        self.stripe_requests = Counter(
            "fluxrate_stripe_requests", "Requests of the operator to the Stripe API by outcome (one per call, "
            "after the SDK's network retries).", ["outcome"], registry=self.registry,
        )
        self._outcomes = {outcome: self.stripe_requests.labels(outcome) for outcome in STRIPE_OUTCOMES}
        self._runner: web.AppRunner | None = None

    def __len__(self) -> int:
        return len(self._invoices)

    def update_invoice(self, namespace: str, name: str, body: Mapping[str, Any] | None) -> None:
        """The invoice as a watch event delivered it; None when it was deleted."""
        key = f"{namespace}/{name}"
        old = self._invoices.get(key, _NOTHING)
        new = invoice_facts(body)
        if new == old:
            return
        if body is None:
            del self._invoices[key]
        else:
            self._invoices[key] = new
        self._apply(old, -1)
        self._apply(new, 1)

    def _apply(self, facts: InvoiceFacts, sign: int) -> None:
        _add(self.phases, facts.phase, sign)
        _add(self.outstanding, facts.currency, sign * facts.outstanding_minor)
        _add(self.refunded, facts.currency, sign * facts.refunded_minor)
        self.overdue += sign * facts.overdue
        self.disputes_open += sign * facts.dispute_open

    def update_integration(self, namespace: str, name: str, body: Mapping[str, Any] | None) -> None:
        """The StripeIntegration as a watch event delivered it; None when it was deleted."""
        if body is None:
            self.integrations.pop((namespace, name), None)
            return
        self.integrations[(namespace, name)] = _condition_true(body.get("status") or {}, "Ready")

    def observe_stripe_request(self, exc: BaseException | None) -> None:
        """One Stripe request ended: ``exc`` is what it raised, None when it succeeded."""
        self._outcomes[stripe_outcome(exc)].inc()

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    async def _serve(self, _: web.Request) -> web.Response:
        body, content_type = self.exposition()
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def start(self, port: int, host: str = "0.0.0.0") -> None:
        """Serve ``/metrics`` on ``port`` (0: not served)."""
        if not port or self._runner is not None:
            return
        app = web.Application()
        app.router.add_get("/metrics", self._serve)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        logger.info("Serving metrics at http://%s:%d/metrics", host, port)

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
