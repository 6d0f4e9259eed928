"""An invoice's payment links as its status records them (pure): the history, the active ones, the updates."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

# Stripe's PaymentIntent statuses after a failed attempt: the payment will not complete by itself.
FAILED_INTENT_STATUSES = frozenset({"requires_payment_method", "canceled"})


def link_history(status: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``status.paymentLinks``, oldest first, ending with the current link (also for an invoice whose status
    predates the history and has only ``paymentLink``)."""
    history = [dict(link) for link in status.get("paymentLinks") or [] if isinstance(link, Mapping)]
    current = status.get("paymentLink")
    if isinstance(current, Mapping) and current.get("id"):
        history = [link for link in history if link.get("id") != current["id"]]
        history.append({**current, "attempt": current.get("attempt") or len(history) + 1})
    return history


def active_links(status: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The invoice's links not known to be deactivated."""
    return [link for link in link_history(status) if link.get("active") is not False]


def with_link(status: Mapping[str, Any], link: Mapping[str, Any]) -> dict[str, Any]:
    """The status values that put ``link`` (an updated current link) in both places."""
    history = [dict(link) if entry.get("id") == link["id"] else entry for entry in link_history(status)]
    return {"paymentLink": dict(link), "paymentLinks": history}


def with_links_inactive(status: Mapping[str, Any], ids: set[str]) -> dict[str, Any]:
    history = [{**link, "active": False} if link.get("id") in ids else link for link in link_history(status)]
    values: dict[str, Any] = {"paymentLinks": history}
    current = status.get("paymentLink") or {}
    if current.get("id") in ids:
        values["paymentLink"] = {**current, "active": False}
    return values


def wants_link_work(status: Mapping[str, Any]) -> bool:
    """An Open invoice whose links need the operator: a renewal under way, a payment failure not yet checked
    against the current link, or a replaced link still active."""
    current = status.get("paymentLink") or {}
    if status.get("phase") != "Open" or not current.get("id"):
        return False
    if (status.get("linkRequest") or {}).get("replacesLinkId"):
        return True
    error = status.get("lastPaymentError") or {}
    if error.get("eventId") and current.get("checkedError") != error["eventId"] and not status.get("pendingPayment"):
        return True
    return any(link["id"] != current["id"] for link in active_links(status))


FIRST_PASS_FLOOR = 0.1  # no invoice's first reconciliation runs in the first tenth of the interval


def jitter_delay(interval: float, seed: str) -> float:
    """When an invoice's first reconciliation runs: spread by a hash of the whole seed over the interval's last nine
    tenths, so the passes of many invoices do not run together, and none runs seconds after the invoice opened (it
    could not find a payment yet and would only spend Stripe's request budget)."""
    fraction = int.from_bytes(hashlib.blake2b(seed.encode(), digest_size=8).digest(), "big") / 2**64
    return interval * (FIRST_PASS_FLOOR + (1 - FIRST_PASS_FLOOR) * fraction)
