"""Status records of what happens to an invoice after its link: refunds, a dispute, the receipt and reminders."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StrictBool, StringConstraints

from fluxrate.model_base import Currency, Model, Timestamp

RefundStatus = Literal["pending", "requires_action", "succeeded", "failed", "canceled"]
ShortText = Annotated[str, StringConstraints(max_length=255)]


class Refund(Model):
    id: ShortText
    amount: str
    amount_minor: int
    currency: Currency
    status: RefundStatus
    reason: ShortText | None = None
    failure_reason: ShortText | None = None
    created_at: Timestamp | None = None
    updated_at: Timestamp | None = None  # ``created`` of the newest event applied: an older one never overwrites it
    event_id: ShortText | None = None


class ChargeRefunded(Model):
    """The newest ``charge.refunded`` seen: the Charge's ``amount_refunded`` at ``as_of``."""

    charge_id: ShortText
    amount: str
    amount_minor: int
    currency: Currency
    as_of: Timestamp
    event_id: ShortText | None = None


class Dispute(Model):
    id: ShortText
    amount: str
    amount_minor: int
    currency: Currency
    reason: ShortText | None = None
    status: Literal["warning_needs_response", "warning_under_review", "warning_closed", "needs_response",
                    "under_review", "won", "lost", "prevented"]
    evidence_due_by: Timestamp | None = None
    funds_withdrawn: bool | None = None
    created_at: Timestamp | None = None
    updated_at: Timestamp | None = None
    event_id: ShortText | None = None


class Receipt(Model):
    payment_id: ShortText | None = None
    sent_at: Timestamp | None = None
    message_id: ShortText | None = None
    attempts: int | None = None
    skipped: ShortText | None = None


ReminderStep = Annotated[str, StringConstraints(max_length=16, pattern=r"^(before|after)-[0-9]{1,3}d$")]


class ReminderRecord(Model):
    step: ReminderStep
    due_at: Timestamp | None = None
    sent_at: Timestamp | None = None
    message_id: ShortText | None = None
    attempts: int | None = None
    skipped: ShortText | None = None


DaysBefore = Annotated[int, Field(ge=1, le=365, strict=True)]
DaysAfter = Annotated[int, Field(ge=0, le=365, strict=True)]


class Reminders(Model):
    """Reminder emails around the due date; an Invoice's own ``reminders`` replace its integration's."""

    enabled: StrictBool = True
    days_before_due: Annotated[list[DaysBefore], Field(max_length=10)] = [3]
    days_after_due: Annotated[list[DaysAfter], Field(max_length=10)] = [1, 7, 14]


class Receipts(Model):
    enabled: StrictBool = True
