"""What happens to a paid invoice after its payment: refunds and disputes reported by Stripe's events.

``report_from_event`` reads ``refund.created|updated|failed`` (a Refund), ``charge.refunded`` (a Charge) and
``charge.dispute.*`` (a Dispute) into an ``AfterPaymentReport``; ``decide`` computes the status change (pure);
``apply_report`` finds the invoice and writes it with optimistic concurrency, as ``payments.apply_report`` does.

Matching, with no list of all invoices: a Charge carries its PaymentIntent's metadata (Stripe copies it), so
``charge.refunded`` names the invoice like a payment event does. A Refund or a Dispute names only its
``payment_intent``: the invoice is the one of the integration's namespace that recorded that payment
(``Kube.find_invoice_by_payment``, a field selector on ``status.payment.providerPaymentId``). No such invoice:
unmatched (answered 200: a refund of a payment fluxrate did not take must not make Stripe retry for days). An event
that names an invoice whose payment is not recorded yet is answered 503 (``Decision.retry_after``) so Stripe
redelivers it after the payment's own event.

Exactly once: ``status.processedEvents`` (shared with payments) makes a redelivery a duplicate. Ordering and the
amounts: ``fluxrate.refunds`` and ``fluxrate.disputes``. ``status.amountRefunded`` = the refunds counted plus a lost
dispute's amount; the phase is Refunded while it is at least the amount paid, else Paid.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fluxrate import conditions as cond
from fluxrate import disputes, refunds
from fluxrate.decision import Decision, Event
from fluxrate.invoice_status import is_paid, update_status
from fluxrate.kube import Kube
from fluxrate.models import AFTER_PAYMENT_EVENTS
from fluxrate.payments import _remember, _unidentified, match_problem

HANDLED = frozenset(AFTER_PAYMENT_EVENTS)
RETRY_AFTER = 60.0  # seconds: what a 503 asks of Stripe (it retries on its own schedule)


@dataclass(frozen=True)
class AfterPaymentReport:
    event_id: str
    event_type: str
    created: int  # the event's ``created`` (unix seconds): what orders the events of one refund or dispute
    payment_intent: str | None
    charge_id: str | None
    invoice_id: str | None = None  # from a Charge's metadata (charge.refunded); None for refunds and disputes
    invoice_uid: str | None = None
    namespace: str | None = None
    refunds: tuple[refunds.RefundFact, ...] = ()
    charge: refunds.ChargeFact | None = None
    dispute: disputes.DisputeFact | None = None

    @property
    def currency(self) -> str | None:
        facts = [*self.refunds, self.charge, self.dispute]
        return next((f.currency for f in facts if f is not None), None)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _id(value: Any) -> str | None:
    return _str(value.get("id")) if isinstance(value, Mapping) else _str(value)


def _currency(obj: Mapping[str, Any]) -> str | None:
    currency = _str(obj.get("currency"))
    return currency.upper() if currency else None


def refund_fact(obj: Mapping[str, Any]) -> refunds.RefundFact | None:
    amount, currency, status = _int(obj.get("amount")), _currency(obj), obj.get("status")
    if not _str(obj.get("id")) or amount is None or currency is None or status not in refunds.STATUSES:
        return None
    return refunds.RefundFact(obj["id"], amount, currency, str(status), _str(obj.get("reason")),
                              _str(obj.get("failure_reason")), _int(obj.get("created")) or 0)


def dispute_fact(event_type: str, obj: Mapping[str, Any]) -> disputes.DisputeFact | None:
    amount, currency, status = _int(obj.get("amount")), _currency(obj), obj.get("status")
    if not _str(obj.get("id")) or amount is None or currency is None or status not in disputes.STATUSES:
        return None
    withdrawn: bool | None = None
    if event_type.endswith(".funds_withdrawn"):
        withdrawn = True
    elif event_type.endswith(".funds_reinstated"):
        withdrawn = False
    elif isinstance(obj.get("balance_transactions"), list):
        moves = [_int(t.get("amount")) or 0 for t in obj["balance_transactions"] if isinstance(t, Mapping)]
        withdrawn = sum(moves) < 0
    details = obj.get("evidence_details")
    due = _int(details.get("due_by")) if isinstance(details, Mapping) else None
    return disputes.DisputeFact(obj["id"], amount, currency, str(status), _str(obj.get("reason")), due, withdrawn,
                                _int(obj.get("created")) or 0)


def _charge_report(common: dict[str, Any], obj: Mapping[str, Any]) -> AfterPaymentReport | None:
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), Mapping) else {}
    assert isinstance(metadata, Mapping)
    amount, currency = _int(obj.get("amount_refunded")), _currency(obj)
    if not _str(obj.get("id")) or amount is None or currency is None:
        return None
    listed = obj.get("refunds")  # included before API version 2022-11-15
    items = listed.get("data") if isinstance(listed, Mapping) else None
    facts = tuple(f for f in (refund_fact(r) for r in items or () if isinstance(r, Mapping)) if f is not None)
    return AfterPaymentReport(
        **common, payment_intent=_id(obj.get("payment_intent")), charge_id=obj["id"],
        invoice_id=_str(metadata.get("invoice_id")), invoice_uid=_str(metadata.get("invoice_uid")),
        namespace=_str(metadata.get("namespace")), refunds=facts,
        charge=refunds.ChargeFact(obj["id"], amount, currency))


def report_from_event(event: Mapping[str, Any]) -> AfterPaymentReport | None:
    """None when the event is not a refund or dispute event in a shape fluxrate reads."""
    event_type, data = event.get("type"), event.get("data")
    obj = data.get("object") if isinstance(data, Mapping) else None
    if event_type not in HANDLED or not isinstance(obj, Mapping) or not _str(event.get("id")):
        return None
    common: dict[str, Any] = {"event_id": event["id"], "event_type": event_type,
                              "created": _int(event.get("created")) or 0}
    if event_type == "charge.refunded":
        return _charge_report(common, obj)
    links = {"payment_intent": _id(obj.get("payment_intent")), "charge_id": _id(obj.get("charge"))}
    if str(event_type).startswith("refund."):
        fact = refund_fact(obj)
        return AfterPaymentReport(**common, **links, refunds=(fact,)) if fact else None
    dispute = dispute_fact(str(event_type), obj)
    return AfterPaymentReport(**common, **links, dispute=dispute) if dispute else None


def decide(invoice: Mapping[str, Any], report: AfterPaymentReport, moment: dt.datetime | None = None) -> Decision:
    """The status change ``report`` makes to ``invoice`` (the latest object), and the Events to post."""
    moment = moment or cond.now()
    status = invoice.get("status") or {}
    if report.event_id in (status.get("processedEvents") or []):
        return Decision("duplicate", f"event {report.event_id} was already applied")
    payment = status.get("payment") or {}
    paid_with = payment.get("providerPaymentId")
    if not is_paid(status.get("phase")) or not payment:
        return Decision("unmatched", f"{report.event_type} is for payment {report.payment_intent}, which the "
                        "invoice has not recorded yet; Stripe will redeliver it", retry_after=RETRY_AFTER)
    remember = {"processedEvents": _remember(status, report.event_id)}
    if report.payment_intent and paid_with != report.payment_intent and not _unidentified(payment):
        return Decision("ignored", f"{report.event_type} is for payment {report.payment_intent}, not the "
                        f"invoice's payment {paid_with}", changes=remember)
    if report.currency and report.currency != payment.get("currency"):
        return Decision("ignored", f"{report.event_type} is in {report.currency}, the payment in "
                        f"{payment.get('currency')}", changes=remember)
    before, snapshot = list(status.get("refunds") or []), status.get("chargeRefunded")
    after, new_snapshot = refunds.apply(before, snapshot, report.refunds, report.charge, event_id=report.event_id,
                                        at=report.created)
    dispute = status.get("dispute")
    new_dispute = disputes.merge(dispute, report.dispute, report.event_id, report.created) if report.dispute else None
    if after == before and new_snapshot == snapshot and new_dispute is None:
        return Decision("ignored", f"{report.event_type} is older than what the invoice records", changes=remember)
    return _changed(invoice, report, moment, (before, snapshot), (after, new_snapshot), new_dispute)


Refunds = tuple[list[dict[str, Any]], dict[str, Any] | None]  # the refund records and the charge snapshot


def _changed(invoice: Mapping[str, Any], report: AfterPaymentReport, moment: dt.datetime,
             before: Refunds, after: Refunds, new_dispute: dict[str, Any] | None) -> Decision:
    """The write and Events once the refunds or the dispute changed (``new_dispute`` None: it did not)."""
    status = invoice.get("status") or {}
    payment = status["payment"]
    dispute = new_dispute or status.get("dispute")
    currency, paid = str(payment.get("currency")), int(payment.get("amountMinor") or 0)
    total = refunds.returned_minor(*after) + disputes.lost_minor(dispute)
    phase = "Refunded" if paid > 0 and total >= paid else "Paid"
    shown = refunds.major(total, currency)
    of = f"{shown} of {payment.get('amount')} {currency}"
    events = _refund_events(before, after, of)
    updates: list[cond.Condition] = []
    if new_dispute is not None:
        events += disputes.events(status.get("dispute"), new_dispute, str(payment.get("providerPaymentId")))
        updates.append(disputes.condition(new_dispute, str(payment.get("providerPaymentId"))))
    if phase == "Refunded":
        updates.append(cond.Condition("Ready", "True", "Refunded", f"Refunded {of}."))
        if status.get("phase") != "Refunded":
            events = [e for e in events if e.reason != "PartiallyRefunded"]
            events.append(Event("Normal", "Refunded", f"Refunded {of}: the payment "
                                f"{payment.get('providerPaymentId')} went back to the customer in full."))
    elif status.get("phase") == "Refunded":
        updates.append(cond.Condition("Ready", "True", "Paid", f"Paid {payment.get('amount')} {currency} "
                                      f"({payment.get('providerPaymentId')}); {of} refunded."))
    changes: dict[str, Any] = {
        "refunds": after[0], "chargeRefunded": after[1], "processedEvents": _remember(status, report.event_id),
        "amountRefunded": {"minor": total, "amount": shown, "currency": currency, "display": f"{shown} {currency}"},
    }
    if new_dispute is not None:
        changes["dispute"] = new_dispute
    if phase != status.get("phase"):
        changes["phase"] = phase
    if updates:
        generation = (invoice.get("metadata") or {}).get("generation")
        changes["conditions"] = cond.merge(status.get("conditions"), updates, generation=generation, moment=moment)
    return Decision("applied", f"{report.event_type}: {of} refunded", changes=changes, events=events)


def _refund_events(before: Refunds, after: Refunds, of: str) -> list[Event]:
    """PartiallyRefunded when more money counts than before; RefundFailed for each refund that failed now."""
    found: list[Event] = []
    old = {r.get("id"): r for r in before[0]}
    if refunds.returned_minor(*after) > refunds.returned_minor(*before):
        new = [r for r in after[0] if r.get("status") in refunds.COUNTED and (
            old.get(r.get("id"), {}).get("status") not in refunds.COUNTED
            or old[r.get("id")].get("amountMinor") != r.get("amountMinor"))]
        what = ", ".join(f"{r.get('amount')} {r.get('currency')} ({r.get('id')}, {r.get('reason') or 'no reason'})"
                         for r in new) or f"a refund Stripe reported on charge {(after[1] or {}).get('chargeId')}"
        found.append(Event("Normal", "PartiallyRefunded", f"Refunded {what}; {of} refunded in total."))
    for record in after[0]:
        previous = old.get(record.get("id")) or {}
        if record.get("status") == "failed" and previous.get("status") != "failed":
            found.append(Event("Warning", "RefundFailed", (
                f"Refund {record.get('id')} of {record.get('amount')} {record.get('currency')} failed "
                f"({record.get('failureReason') or 'no reason given'}): the money did not reach the customer and no "
                f"longer counts ({of} refunded). Refund the customer another way, or ask them for new payment "
                "details and refund again in the Stripe Dashboard.")))
        elif record.get("status") == "canceled" and previous.get("status") != "canceled":
            found.append(Event("Normal", "RefundCanceled", f"Refund {record.get('id')} of {record.get('amount')} "
                               f"{record.get('currency')} was canceled; {of} refunded."))
    return found


async def _find(kube: Kube, namespace: str, report: AfterPaymentReport,
                integration: str | None) -> tuple[dict[str, Any] | None, str]:
    """The invoice ``report`` is about, or None and why none."""
    if report.invoice_id:
        invoice = await kube.get_object("invoices", namespace, report.invoice_id)
        if invoice is None:
            return None, f"no invoice {report.invoice_id} in namespace {namespace}"
    elif report.payment_intent:
        invoice = await kube.find_invoice_by_payment(namespace, report.payment_intent)
        if invoice is None:
            return None, (f"no invoice in namespace {namespace} recorded payment {report.payment_intent} "
                          "(not a payment fluxrate took, or not recorded when the event came)")
    else:
        return None, f"{report.event_type} names no PaymentIntent"
    problem = match_problem(invoice, report, namespace, integration)
    return (None, problem) if problem else (invoice, "")


async def apply_report(
    kube: Kube, namespace: str, report: AfterPaymentReport, *, integration: str | None,
    moment: dt.datetime | None = None,
) -> tuple[Decision, dict[str, Any] | None]:
    """Match, decide and write. Returns the decision and the invoice (None when unmatched)."""
    invoice, problem = await _find(kube, namespace, report, integration)
    if invoice is None:
        return Decision("unmatched", problem), None
    decisions: list[Decision] = []

    def mutate(obj: dict[str, Any]) -> dict[str, Any] | None:
        decisions.append(decide(obj, report, moment))
        return decisions[-1].changes

    written, _ = await update_status(kube, namespace, invoice["metadata"]["name"], mutate, initial=invoice)
    return decisions[-1], written
