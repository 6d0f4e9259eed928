"""The refund records of an invoice (``status.refunds[]``) and the money they return (pure).

Ordering: Stripe delivers events in any order and more than once. A record is changed only by an event whose
``created`` is not older than the record's ``updatedAt`` (the newest event applied to it); at the same second the
more final status wins (requires_action < pending < succeeded < failed = canceled: a succeeded refund can still
fail, a failed or canceled one never comes back).

Counting, as Stripe's ``charge.amount_refunded`` counts: a refund that is pending, requires_action or succeeded
returns money; a failed or canceled one does not (it stays listed, with its failure reason).

``charge.refunded`` carries the Charge's ``amount_refunded`` but, since API version 2022-11-15, not its refunds. A
refund event can go unmatched (answered 200) when it arrives before the payment it refunds was recorded, while
``charge.refunded`` names the invoice and is answered 503 until the payment is recorded; so a charge can report
refunds fluxrate has no record of. The newest charge snapshot (amount A at the event's time T) is kept as it is in
``status.chargeRefunded`` (at the same second the larger amount), and counts only for the part no record explains::

    known(T)    = the records created by T that Stripe counted at T (counted now, or failed/canceled only after T)
    unexplained = max(0, A - known(T))

Money is never counted twice: a refund counts through its own record, the charge only for what no record explains;
when a refund's own event arrives later, its record explains that part. Old API versions include the charge's
refunds in ``charge.refunded``; they are recorded like refund events.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fluxrate import conditions as cond
from fluxrate import money
from fluxrate.models import MAX_REFUNDS

COUNTED = frozenset({"pending", "requires_action", "succeeded"})
STATUSES = frozenset({*COUNTED, "failed", "canceled"})
RANK = {"requires_action": 0, "pending": 1, "succeeded": 2, "failed": 3, "canceled": 3}


@dataclass(frozen=True)
class RefundFact:
    """A Refund as one event shows it."""

    id: str
    amount_minor: int
    currency: str
    status: str
    reason: str | None = None
    failure_reason: str | None = None
    created: int = 0  # the refund's creation (unix seconds)


@dataclass(frozen=True)
class ChargeFact:
    """What ``charge.refunded`` says: the Charge's ``amount_refunded`` at the event's time."""

    id: str
    amount_refunded: int
    currency: str


def stamp(seconds: int) -> str:
    return cond.timestamp(dt.datetime.fromtimestamp(seconds, dt.UTC))


def epoch(value: Any) -> int:
    """A status timestamp as unix seconds (0 when absent or unreadable: older than any event)."""
    if not isinstance(value, str):
        return 0
    try:
        return int(dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0


def major(minor: int, currency: str) -> str:
    return str(money.from_minor(minor, currency))


def counted_minor(records: Iterable[Mapping[str, Any]]) -> int:
    """Money the refund records return."""
    return sum(int(r.get("amountMinor") or 0) for r in records if r.get("status") in COUNTED)


def known_at(records: Iterable[Mapping[str, Any]], moment: int) -> int:
    """What Stripe counted at ``moment`` of the refunds recorded. Times are whole seconds: a refund that failed in
    the snapshot's own second is taken to have failed after it (``charge.refunded`` is sent as a refund is created;
    a failure comes later), so its amount is not counted again through the charge."""
    return sum(int(r.get("amountMinor") or 0) for r in records
               if epoch(r.get("createdAt")) <= moment
               and (r.get("status") in COUNTED or epoch(r.get("updatedAt")) >= moment))


def unexplained_minor(records: list[dict[str, Any]], snapshot: Mapping[str, Any] | None) -> int:
    """What the charge reported refunded that no refund record explains."""
    if not snapshot:
        return 0
    return max(0, int(snapshot.get("amountMinor") or 0) - known_at(records, epoch(snapshot.get("asOf"))))


def returned_minor(records: list[dict[str, Any]], snapshot: Mapping[str, Any] | None) -> int:
    """Money the refunds return: the records, and what only the charge reported."""
    return counted_minor(records) + unexplained_minor(records, snapshot)


def _newer(record: Mapping[str, Any], at: int, status: str) -> bool:
    """Whether an event of time ``at`` reporting ``status`` may change ``record``."""
    updated = epoch(record.get("updatedAt"))
    return at > updated or (at == updated and RANK.get(status, 0) >= RANK.get(str(record.get("status")), 0))


def _record(fact: RefundFact, event_id: str, at: int) -> dict[str, Any]:
    record = {
        "id": fact.id, "amount": major(fact.amount_minor, fact.currency), "amountMinor": fact.amount_minor,
        "currency": fact.currency, "status": fact.status, "reason": fact.reason, "failureReason": fact.failure_reason,
        "createdAt": stamp(fact.created or at), "updatedAt": stamp(at), "eventId": event_id,
    }
    return {k: v for k, v in record.items() if v is not None}


def merge_refund(records: list[dict[str, Any]], fact: RefundFact, event_id: str, at: int) -> list[dict[str, Any]]:
    """``records`` with ``fact`` applied when it is not older than what they hold (a new record at the end)."""
    for index, record in enumerate(records):
        if record.get("id") == fact.id:
            if not _newer(record, at, fact.status):
                return records
            return [*records[:index], _record(fact, event_id, at), *records[index + 1:]]
    return [*records, _record(fact, event_id, at)]


def apply(records: list[dict[str, Any]], snapshot: Mapping[str, Any] | None, facts: Iterable[RefundFact],
          charge: ChargeFact | None, *, event_id: str, at: int) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The refund records and the charge snapshot after an event of time ``at`` (its refunds, and the charge's
    ``amount_refunded``)."""
    merged = list(records)
    for fact in facts:
        merged = merge_refund(merged, fact, event_id, at)
    kept = dict(snapshot) if snapshot else None
    if charge is not None and (kept is None or at > epoch(kept.get("asOf")) or (
            at == epoch(kept.get("asOf")) and charge.amount_refunded >= int(kept.get("amountMinor") or 0))):
        kept = {"chargeId": charge.id, "amount": major(charge.amount_refunded, charge.currency),
                "amountMinor": charge.amount_refunded, "currency": charge.currency, "asOf": stamp(at),
                "eventId": event_id}
    return _bounded(merged), kept


def _bounded(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """At most MAX_REFUNDS records: the oldest failed or canceled ones go first (they count for nothing)."""
    excess = len(records) - MAX_REFUNDS
    if excess <= 0:
        return records
    dropped = {id(r) for r in [r for r in records if r.get("status") not in COUNTED][:excess]}
    return [r for r in records if id(r) not in dropped]
