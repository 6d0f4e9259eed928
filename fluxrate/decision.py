"""What handling something decided: the status change to write, the Events to post, and whether to try again.

One type for the operator's reconciles (integrations, invoices) and for a payment report (``payments.decide``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

EventType = Literal["Normal", "Warning"]
# What became of a payment report: the receiver's delivery outcome (``models.DeliveryOutcome``) has these and
# the two a report never reaches (``signature_failed``, ``error``).
ReportOutcome = Literal["applied", "duplicate", "ignored", "unmatched"]


class Event(NamedTuple):
    """A Kubernetes Event to post."""

    type: EventType
    reason: str
    message: str


@dataclass
class Decision:
    """A computed status change plus the Events to post.

    ``outcome`` and ``reason`` say what became of a payment report; reconciles leave them unset.
    """

    outcome: ReportOutcome | None = None
    reason: str = ""
    changes: dict[str, Any] | None = None  # the status fields to write; None: nothing to write
    events: list[Event] = field(default_factory=list)
    retry_after: float | None = None  # temporary trouble: try again after this (the base of a backoff)
    retry_message: str = ""
    permanent: bool = False  # needs the user: do not retry until something changes


def backoff(base: float, retry: int, cap: float = 600.0, doublings: int = 10) -> float:
    """``base`` doubled per retry (at most ``doublings`` times), never above ``cap``."""
    return min(base * 2 ** min(retry, doublings), cap)
