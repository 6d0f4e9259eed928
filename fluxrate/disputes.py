"""The dispute of an invoice's payment (``status.dispute``), its ``Disputed`` condition and Events (pure).

Ordering as for refunds (``fluxrate.refunds``): the record changes only with an event whose ``created`` is not
older than its ``updatedAt``; at the same second the more final status wins (an inquiry < a chargeback awaiting a
response < under review < closed). Another dispute of the same payment replaces the record when it was opened no
earlier. A lost dispute counts as money returned (``status.amountRefunded``); a won one does not.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fluxrate import conditions as cond
from fluxrate.decision import Event
from fluxrate.refunds import epoch, major, stamp

OPEN = frozenset({"warning_needs_response", "warning_under_review", "needs_response", "under_review"})
CLOSED = frozenset({"won", "lost", "warning_closed", "prevented"})
STATUSES = OPEN | CLOSED
RANK = {"warning_needs_response": 0, "warning_under_review": 1, "needs_response": 2, "under_review": 3,
        **dict.fromkeys(CLOSED, 4)}
CLOSED_REASONS = {"won": "DisputeWon", "lost": "DisputeLost"}


@dataclass(frozen=True)
class DisputeFact:
    """A Dispute as one event shows it."""

    id: str
    amount_minor: int
    currency: str
    status: str
    reason: str | None = None
    evidence_due_by: int | None = None
    funds_withdrawn: bool | None = None  # None: the event does not tell
    created: int = 0


def lost_minor(dispute: Mapping[str, Any] | None) -> int:
    """The money a lost dispute returned to the customer."""
    if not dispute or dispute.get("status") != "lost":
        return 0
    return int(dispute.get("amountMinor") or 0)


def merge(current: Mapping[str, Any] | None, fact: DisputeFact, event_id: str, at: int) -> dict[str, Any] | None:
    """The dispute record after an event of time ``at``; None when the event is older than the record."""
    if current and current.get("id") != fact.id:
        if fact.created < epoch(current.get("createdAt")):
            return None  # an earlier dispute of the payment
        current = None
    if current:
        updated = epoch(current.get("updatedAt"))
        stale = at < updated or (at == updated and RANK[fact.status] < RANK.get(str(current.get("status")), 0))
        if stale:
            return None
    withdrawn = fact.funds_withdrawn if fact.funds_withdrawn is not None else (current or {}).get("fundsWithdrawn")
    record = {
        "id": fact.id, "amount": major(fact.amount_minor, fact.currency), "amountMinor": fact.amount_minor,
        "currency": fact.currency, "reason": fact.reason, "status": fact.status,
        "evidenceDueBy": stamp(fact.evidence_due_by) if fact.evidence_due_by else None,
        "fundsWithdrawn": withdrawn, "createdAt": stamp(fact.created or at), "updatedAt": stamp(at),
        "eventId": event_id,
    }
    return {k: v for k, v in record.items() if v is not None}


def _display(dispute: Mapping[str, Any]) -> str:
    return f"{dispute.get('amount')} {dispute.get('currency')}"


def condition(dispute: Mapping[str, Any], payment_id: str) -> cond.Condition:
    status = str(dispute.get("status"))
    what = f"Dispute {dispute.get('id')} of {_display(dispute)} ({dispute.get('reason') or 'no reason given'})"
    if status in OPEN:
        due = dispute.get("evidenceDueBy")
        todo = (f"submit evidence in the Stripe Dashboard before {due}" if due
                else "respond in the Stripe Dashboard")
        return cond.Condition("Disputed", "True", "DisputeOpen", f"{what} of payment {payment_id} is {status}: {todo}.")
    reason = CLOSED_REASONS.get(status, "DisputeClosed")
    return cond.Condition("Disputed", "False", reason, f"{what} of payment {payment_id} was closed: {status}.")


def events(before: Mapping[str, Any] | None, after: Mapping[str, Any], payment_id: str) -> list[Event]:
    """A Warning when a dispute opens (first seen open), and one Event when it is won or lost."""
    fresh = not before or before.get("id") != after.get("id")
    status = after.get("status")
    found: list[Event] = []
    if fresh and status in OPEN:
        due = after.get("evidenceDueBy")
        todo = (f"submit evidence in the Stripe Dashboard before {due}" if due
                else "respond in the Stripe Dashboard")
        found.append(Event("Warning", "DisputeOpened",
                           f"The customer's bank disputed {_display(after)} of payment {payment_id} "
                           f"({after.get('reason') or 'no reason given'}, {after.get('id')}): {todo}."))
    if status != (None if fresh else (before or {}).get("status")):
        if status == "won":
            found.append(Event("Normal", "DisputeWon", f"Dispute {after.get('id')} of {_display(after)} was won: "
                               "the payment stays with you."))
        elif status == "lost":
            found.append(Event("Warning", "DisputeLost", f"Dispute {after.get('id')} of {_display(after)} was lost: "
                               "the amount went back to the customer and counts as refunded."))
    return found
