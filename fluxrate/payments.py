"""What a Stripe payment report means for an invoice: one code path for webhooks and reconciliation.

``report_from_event`` reads a Stripe event (or a Checkout Session found by polling) into a ``PaymentReport``, in
every shape fluxrate's events have had since API version 2020-08-27 (``fluxrate.api_versions``): before
2025-03-31.basil an invoice names its PaymentIntent in ``invoice.payment_intent``; from basil on that field is gone
and the payments are InvoicePayment objects (``invoice.payments.data[].payment.payment_intent`` when the list is
included, and the ``invoice_payment.paid`` event). An invoice event never reports the ``in_...`` id as the payment;
when it names no PaymentIntent the report carries none, and ``decide`` does not take it for a second payment.
``decide`` computes the invoice status change from the latest invoice and the report (pure);
``apply_report`` writes it with optimistic concurrency.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from fluxrate import conditions as cond
from fluxrate import money
from fluxrate.decision import Decision, Event
from fluxrate.invoice_status import is_paid, update_status
from fluxrate.kube import Kube
from fluxrate.models import DEFAULT_ENABLED_EVENTS, integration_ref_name

Kind = Literal["succeeded", "pending", "failed"]
PROCESSED_EVENTS_LIMIT = 64

# The event types fluxrate acts on: the ones a managed endpoint subscribes to, and ``invoice_payment.paid`` (API
# 2025-03-31.basil and later) for hand-made endpoints that subscribe to it.
INVOICE_PAYMENT_PAID = "invoice_payment.paid"
HANDLED_TYPES = frozenset((*DEFAULT_ENABLED_EVENTS, INVOICE_PAYMENT_PAID))


@dataclass(frozen=True)
class PaymentReport:
    kind: Kind
    event_id: str
    event_type: str
    source: Literal["webhook", "reconciliation"]
    invoice_id: str | None
    invoice_uid: str | None
    namespace: str | None
    customer_id: str | None
    amount_minor: int | None
    currency: str | None
    provider_payment_id: str | None
    checkout_session_id: str | None = None
    livemode: bool | None = None
    error_message: str | None = None
    error_code: str | None = None
    stripe_invoice_id: str | None = None  # the Stripe invoice (in_...) of invoice events; never a payment id


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _object_id(value: Any) -> str | None:
    """Stripe sends either an id or an expanded object."""
    if isinstance(value, Mapping):
        return _str(value.get("id"))
    return _str(value)


def report_from_object(
    event_type: str, obj: Mapping[str, Any], *, event_id: str, source: Literal["webhook", "reconciliation"] = "webhook",
    livemode: bool | None = None,
) -> PaymentReport | None:
    """None when the type is not one fluxrate acts on."""
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), Mapping) else {}
    assert isinstance(metadata, Mapping)
    object_id = _str(obj.get("id"))
    currency = _str(obj.get("currency"))
    common: dict[str, Any] = {
        "event_id": event_id,
        "event_type": event_type,
        "source": source,
        "invoice_id": _str(metadata.get("invoice_id")),
        "invoice_uid": _str(metadata.get("invoice_uid")),
        "namespace": _str(metadata.get("namespace")),
        "customer_id": _str(metadata.get("customer_id")),
        "currency": currency.upper() if currency else None,
        "livemode": obj.get("livemode") if isinstance(obj.get("livemode"), bool) else livemode,
    }
    if event_type.startswith("checkout.session."):
        session = {"amount_minor": _int(obj.get("amount_total")), "checkout_session_id": object_id,
                   "provider_payment_id": _object_id(obj.get("payment_intent")) or object_id}
        if event_type == "checkout.session.completed":
            paid = obj.get("payment_status") in ("paid", "no_payment_required")
            return PaymentReport(kind="succeeded" if paid else "pending", **common, **session)
        if event_type == "checkout.session.async_payment_succeeded":
            return PaymentReport(kind="succeeded", **common, **session)
        if event_type == "checkout.session.async_payment_failed":
            return PaymentReport(kind="failed", error_message="The delayed payment failed.", **common, **session)
        return None
    if event_type.startswith("payment_intent."):
        error = obj.get("last_payment_error") if isinstance(obj.get("last_payment_error"), Mapping) else {}
        assert isinstance(error, Mapping)
        intent = {"provider_payment_id": object_id,
                  "amount_minor": _int(obj.get("amount_received")) or _int(obj.get("amount"))}
        if event_type == "payment_intent.succeeded":
            return PaymentReport(kind="succeeded", **common, **intent)
        if event_type == "payment_intent.payment_failed":
            return PaymentReport(kind="failed", error_message=_str(error.get("message")) or "The payment failed.",
                                 error_code=_str(error.get("decline_code")) or _str(error.get("code")),
                                 **common, **{**intent, "amount_minor": _int(obj.get("amount"))})
        return None
    if event_type in ("invoice.payment_succeeded", "invoice.payment_failed"):
        succeeded = event_type == "invoice.payment_succeeded"
        payment = {"provider_payment_id": invoice_payment_intent(obj, paid=succeeded),
                   "stripe_invoice_id": object_id,
                   "amount_minor": _int(obj.get("amount_paid")) if succeeded else _int(obj.get("amount_due"))}
        if succeeded:
            return PaymentReport(kind="succeeded", **common, **payment)
        return PaymentReport(kind="failed", error_message="The invoice payment failed.", **common, **payment)
    if event_type == INVOICE_PAYMENT_PAID:
        # An InvoicePayment has no metadata: its invoice is found only through the invoice's own events.
        return PaymentReport(kind="succeeded", **common, provider_payment_id=_payment_id(obj.get("payment")),
                             stripe_invoice_id=_object_id(obj.get("invoice")),
                             amount_minor=_int(obj.get("amount_paid")))
    return None


def _payment_id(payment: Any) -> str | None:
    """The PaymentIntent (else the Charge) of an InvoicePayment's ``payment`` hash."""
    if not isinstance(payment, Mapping):
        return None
    return _object_id(payment.get("payment_intent")) or _object_id(payment.get("charge"))


def invoice_payment_intent(invoice: Mapping[str, Any], *, paid: bool = True) -> str | None:
    """The PaymentIntent an invoice was paid (or attempted) with, in either shape; None when it names none.

    Before 2025-03-31.basil: ``payment_intent`` (an id or an expanded object). From basil on: the InvoicePayment
    objects in ``payments.data`` (included only when expanded: a webhook's invoice usually has no ``payments``);
    for a success the paid one, else the newest.
    """
    legacy = _object_id(invoice.get("payment_intent"))
    if legacy:
        return legacy
    payments = invoice.get("payments")
    items = payments.get("data") if isinstance(payments, Mapping) else None
    if not isinstance(items, list):
        return None
    candidates = [p for p in items if isinstance(p, Mapping)]
    if paid:
        candidates = [p for p in candidates if p.get("status") == "paid"] or candidates
    for item in candidates:
        found = _payment_id(item.get("payment"))
        if found:
            return found
    return None


def report_from_event(event: Mapping[str, Any]) -> PaymentReport | None:
    data = event.get("data")
    obj = data.get("object") if isinstance(data, Mapping) else None
    if not isinstance(obj, Mapping) or not isinstance(event.get("type"), str) or not _str(event.get("id")):
        return None
    return report_from_object(
        event["type"], obj, event_id=event["id"],
        livemode=event.get("livemode") if isinstance(event.get("livemode"), bool) else None,
    )


def _timestamp(moment: dt.datetime) -> str:
    return cond.timestamp(moment)


def _remember(status: Mapping[str, Any], event_id: str) -> list[str]:
    processed = [e for e in status.get("processedEvents") or [] if e != event_id]
    return [*processed, event_id][-PROCESSED_EVENTS_LIMIT:]


def _unidentified(payment: Mapping[str, Any]) -> bool:
    """A payment recorded from an event that named no payment (its id is the event's)."""
    return bool(payment.get("eventId")) and payment.get("providerPaymentId") == payment.get("eventId")


def decide(invoice: Mapping[str, Any], report: PaymentReport, moment: dt.datetime | None = None) -> Decision:
    """The status change ``report`` makes to ``invoice`` (the latest object), and the Events to post."""
    moment = moment or cond.now()
    status = invoice.get("status") or {}
    if report.event_id in (status.get("processedEvents") or []):
        return Decision("duplicate", f"event {report.event_id} was already applied")
    if report.kind == "succeeded":
        if is_paid(status.get("phase")):
            return _paid_again(status, report)
        return _paid(invoice, report, moment)
    return _not_paid(status, report, moment)


def _paid_again(status: Mapping[str, Any], report: PaymentReport) -> Decision:
    """A payment reported for an invoice already paid: the same payment again, or a second one."""
    payment = status.get("payment") or {}
    if payment.get("providerPaymentId") in (report.provider_payment_id, report.checkout_session_id):
        return Decision("duplicate", f"payment {payment.get('providerPaymentId')} is already recorded")
    if report.provider_payment_id is None:
        # An invoice event of API 2025-03-31.basil or later names no PaymentIntent: it cannot tell another
        # payment, and every payment through a link also sends events that name theirs.
        return Decision("duplicate", f"the invoice is already paid; {report.event_type} names no "
                        "PaymentIntent, so it is not taken for a second payment",
                        changes={"processedEvents": _remember(status, report.event_id)})
    if _unidentified(payment):
        # Recorded from an event that named no payment: this is the payment it was.
        record = {**payment, "providerPaymentId": report.provider_payment_id}
        return Decision("duplicate", f"the recorded payment is {report.provider_payment_id}",
                        changes={"payment": record, "processedEvents": _remember(status, report.event_id)})
    message = (
        f"Invoice already paid by {payment.get('providerPaymentId')}, but Stripe reports another payment "
        f"{report.provider_payment_id} ({report.event_id}): check it in the Stripe Dashboard and refund it."
    )
    return Decision("duplicate", "a second payment for a paid invoice",
                    changes={"processedEvents": _remember(status, report.event_id)},
                    events=[Event("Warning", "SecondPayment", message)])


def _paid(invoice: Mapping[str, Any], report: PaymentReport, moment: dt.datetime) -> Decision:
    """The first payment of the invoice: record it, and warn of an amount that differs or a void invoice."""
    status = invoice.get("status") or {}
    spec = invoice.get("spec") or {}
    currency = report.currency or spec.get("currency")
    amount_minor = report.amount_minor if report.amount_minor is not None else 0
    try:
        amount = str(money.from_minor(amount_minor, currency)) if currency else str(amount_minor)
    except money.MoneyError:
        amount = str(amount_minor)
    record = {
        "providerPaymentId": report.provider_payment_id or report.event_id,
        "amount": amount,
        "amountMinor": amount_minor,
        "currency": currency,
        "paidAt": _timestamp(moment),
        "eventId": report.event_id,
        "eventType": report.event_type,
        "source": report.source,
    }
    due = status.get("amountDue") or {}
    updates = [cond.Condition("Ready", "True", "Paid",
                              f"Paid {amount} {currency} ({record['providerPaymentId']}).")]
    events = [Event("Normal", "Paid", f"Paid {amount} {currency} via {report.event_type} ({report.event_id}).")]
    if cond.is_true(status.get("conditions"), "Overdue"):  # the one write that pays also ends Overdue
        updates.append(cond.Condition("Overdue", "False", "Paid", f"Paid on {_timestamp(moment)}."))
    mismatch = (report.amount_minor is not None and due.get("minor") is not None
                and report.amount_minor != due.get("minor")) or (
        report.currency is not None and spec.get("currency") and report.currency != spec.get("currency"))
    if mismatch:
        message = (f"Stripe reported {amount} {currency} but the invoice is for {due.get('display')}: "
                   "check the payment in the Stripe Dashboard.")
        updates.append(cond.Condition("AmountMismatch", "True", "AmountMismatch", message))
        events.append(Event("Warning", "AmountMismatch", message))
    if status.get("phase") == "Void":
        events.append(Event("Warning", "PaidAfterVoid",
                            "Stripe reports a payment for a voided invoice; it is recorded: refund it if needed."))
    generation = invoice.get("metadata", {}).get("generation")
    changes = {
        "phase": "Paid",
        "payment": record,
        "pendingPayment": None,
        "processedEvents": _remember(status, report.event_id),
        "conditions": cond.merge(status.get("conditions"), updates, generation=generation, moment=moment),
    }
    return Decision("applied", "paid", changes=changes, events=events)


def _not_paid(status: Mapping[str, Any], report: PaymentReport, moment: dt.datetime) -> Decision:
    """A payment pending (a delayed method) or failed."""
    if is_paid(status.get("phase")):
        return Decision("ignored", f"{report.event_type} after the invoice was paid")
    failed = status.get("lastPaymentError") or {}
    if report.kind == "pending" and report.provider_payment_id and \
            failed.get("providerPaymentId") == report.provider_payment_id:
        # delivered after its own failure (events arrive in any order): that payment is not pending any more
        return Decision("applied", "a delayed payment that already failed",
                        changes={"processedEvents": _remember(status, report.event_id)})
    if report.kind == "pending":
        changes = {
            "pendingPayment": {"checkoutSessionId": report.checkout_session_id, "eventId": report.event_id,
                               "since": _timestamp(moment)},
            "processedEvents": _remember(status, report.event_id),
        }
        return Decision("applied", "awaiting a delayed payment", changes=changes,
                        events=[Event("Normal", "PaymentPending",
                                      "The customer paid with a delayed method; awaiting it.")])
    changes = {
        "lastPaymentError": {"message": report.error_message, "code": report.error_code,
                             "eventId": report.event_id, "eventType": report.event_type, "at": _timestamp(moment),
                             # which payment failed: the operator renews a link this failure used up
                             "providerPaymentId": report.provider_payment_id,
                             "checkoutSessionId": report.checkout_session_id},
        "pendingPayment": None,
        "processedEvents": _remember(status, report.event_id),
    }
    return Decision("applied", "payment failed", changes=changes,
                    events=[Event("Warning", "PaymentFailed", f"Payment failed: {report.error_message}")])


class NamesInvoice(Protocol):
    """What a report says about its invoice (a payment's, or a refund's or dispute's)."""

    @property
    def invoice_uid(self) -> str | None: ...

    @property
    def namespace(self) -> str | None: ...


def match_problem(
    invoice: Mapping[str, Any], report: NamesInvoice, namespace: str, integration: str | None
) -> str | None:
    """Why ``invoice`` must not take ``report`` (another integration or another object of the same name)."""
    if integration is not None and integration_ref_name(invoice.get("spec")) != integration:
        return f"invoice {namespace}/{invoice['metadata']['name']} belongs to another integration"
    if report.invoice_uid and invoice["metadata"].get("uid") != report.invoice_uid:
        return f"invoice {namespace}/{invoice['metadata']['name']} is not the one the payment link was made for"
    if report.namespace and report.namespace != namespace:
        return "the payment belongs to another namespace"
    return None


async def apply_report(
    kube: Kube, namespace: str, report: PaymentReport, *, integration: str | None, moment: dt.datetime | None = None
) -> tuple[Decision, dict[str, Any] | None]:
    """Match, decide and write. Returns the decision and the invoice (None when unmatched)."""
    if not report.invoice_id:
        return Decision("unmatched", "no fluxrate invoice_id in the metadata"), None
    invoice = await kube.get_object("invoices", namespace, report.invoice_id)
    if invoice is None:
        return Decision("unmatched", f"no invoice {report.invoice_id} in namespace {namespace}"), None
    problem = match_problem(invoice, report, namespace, integration)
    if problem:
        return Decision("unmatched", problem), None
    decisions: list[Decision] = []

    def mutate(obj: dict[str, Any]) -> dict[str, Any] | None:
        decisions.append(decide(obj, report, moment))
        return decisions[-1].changes

    written, _ = await update_status(kube, namespace, report.invoice_id, mutate, initial=invoice)
    return decisions[-1], written
