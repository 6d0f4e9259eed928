"""Pydantic models of the two custom resources, kept in step with ``crds/`` by tests/test_model_crd_drift.py."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    field_validator,
    model_validator,
)

from fluxrate import money
from fluxrate.due_dates import DueDate
from fluxrate.events_recovery_model import EventsRecovery
from fluxrate.lifecycle_models import ChargeRefunded, Dispute, Receipt, Receipts, Refund, ReminderRecord, Reminders
from fluxrate.model_base import Currency, Timestamp
from fluxrate.model_base import Model as _Model

PAYMENT_EVENTS: tuple[str, ...] = (
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "invoice.payment_succeeded",
    "invoice.payment_failed",
)
# What happens after a payment: refunds and disputes (the invoice is found through the PaymentIntent it recorded).
REFUND_EVENTS: tuple[str, ...] = ("charge.refunded", "refund.created", "refund.updated", "refund.failed")
DISPUTE_EVENTS: tuple[str, ...] = (
    "charge.dispute.created",
    "charge.dispute.updated",
    "charge.dispute.closed",
    "charge.dispute.funds_withdrawn",
    "charge.dispute.funds_reinstated",
)
AFTER_PAYMENT_EVENTS: tuple[str, ...] = (*REFUND_EVENTS, *DISPUTE_EVENTS)
DEFAULT_ENABLED_EVENTS: tuple[str, ...] = (*PAYMENT_EVENTS, *AFTER_PAYMENT_EVENTS)

DnsName = Annotated[
    str, StringConstraints(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
]
SecretDataKey = Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")]
Email = Annotated[str, StringConstraints(max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
AmountString = Annotated[str, StringConstraints(max_length=16, pattern=r"^(0|[1-9][0-9]{0,11})([.][0-9]{1,3})?$")]
EventType = Annotated[str, StringConstraints(pattern=r"^[a-z_]+(\.[a-z_]+)+$")]


# --- shared -------------------------------------------------------------------------------------------


class SecretKeySelector(_Model):
    name: DnsName
    key: SecretDataKey


class Condition(_Model):
    type: Annotated[
        str,
        StringConstraints(
            max_length=316,
            pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
        ),
    ]
    status: Literal["True", "False", "Unknown"]
    reason: Annotated[
        str, StringConstraints(min_length=1, max_length=1024, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    ]
    message: Annotated[str, StringConstraints(max_length=32768)]
    last_transition_time: Timestamp
    observed_generation: Annotated[int, Field(ge=0)] | None = None


# --- StripeIntegration --------------------------------------------------------------------------------


class WebhookEndpointSpec(_Model):
    managed: StrictBool = False
    enabled_events: Annotated[list[EventType], Field(min_length=1, max_length=32)] = list(DEFAULT_ENABLED_EVENTS)


class AfterCompletion(_Model):
    type: Literal["hosted_confirmation", "redirect"] = "hosted_confirmation"
    redirect_url: Annotated[str, StringConstraints(max_length=2048, pattern=r"^https?://[^\s]+$")] | None = Field(
        default=None, alias="redirectURL"
    )
    message: Annotated[str, StringConstraints(max_length=500)] | None = None

    @model_validator(mode="after")
    def _redirect_needs_url(self) -> AfterCompletion:
        if self.type == "redirect" and not self.redirect_url:
            raise ValueError("afterCompletion.type redirect needs redirectURL, e.g. https://example.com/thanks")
        return self


class PaymentLinkDefaults(_Model):
    after_completion: AfterCompletion = Field(default_factory=AfterCompletion)


def endpoint_events(configured: list[str] | tuple[str, ...]) -> list[str]:
    """The event types a managed endpoint enables: the configured ones, and always the after-payment ones (an
    integration stored before they existed still lists only the payment events)."""
    return [*configured, *(t for t in AFTER_PAYMENT_EVENTS if t not in configured)]


class StripeIntegrationSpec(_Model):
    display_name: Annotated[str, StringConstraints(max_length=100)] | None = None
    secret_key_ref: SecretKeySelector
    webhook_secret_ref: SecretKeySelector | None = None
    active: StrictBool = True
    webhook_endpoint: WebhookEndpointSpec = Field(default_factory=WebhookEndpointSpec)
    payment_links: PaymentLinkDefaults = Field(default_factory=PaymentLinkDefaults)
    reminders: Reminders = Field(default_factory=Reminders)
    receipts: Receipts = Field(default_factory=Receipts)


# What became of a webhook delivery: a payment report's outcome (``decision.ReportOutcome``), or one of the two
# a delivery fails with before it is a report.
DeliveryOutcome = Literal["applied", "duplicate", "ignored", "unmatched", "signature_failed", "error"]


class DeliveryCounts(_Model):
    applied: int = 0
    duplicate: int = 0
    ignored: int = 0
    unmatched: int = 0
    signature_failed: int = Field(default=0, alias="signature_failed")
    error: int = 0


ApiVersionString = Annotated[str, StringConstraints(max_length=64)]


class Delivery(_Model):
    event_id: str | None = None
    type: str | None = None
    outcome: DeliveryOutcome
    invoice: str | None = None
    reason: str | None = None
    api_version: ApiVersionString | None = None
    time: Timestamp


class ApiVersionSeen(_Model):
    api_version: ApiVersionString
    readable: bool
    count: int = 0
    last_seen: Timestamp | None = None


class Deliveries(_Model):
    counts: DeliveryCounts = Field(default_factory=DeliveryCounts)
    last_delivery_time: Timestamp | None = None
    recent: Annotated[list[Delivery], Field(max_length=50)] = Field(default_factory=list)
    api_versions: Annotated[list[ApiVersionSeen], Field(max_length=8)] = Field(default_factory=list)


class RetiringWebhookEndpoint(_Model):
    id: str
    api_version: ApiVersionString | None = None
    since: Timestamp


class StripeIntegrationStatus(_Model):
    observed_generation: int | None = None
    mode: Literal["live", "test"] | None = None
    account_id: str | None = None
    webhook_url: str | None = Field(default=None, alias="webhookURL")
    webhook_endpoint_id: str | None = None
    webhook_endpoint_api_version: ApiVersionString | None = None
    retiring_webhook_endpoint: RetiringWebhookEndpoint | None = None
    webhook_secret_name: str | None = None
    deliveries: Deliveries | None = None
    events_recovery: EventsRecovery | None = None
    conditions: list[Condition] = Field(default_factory=list)


# --- Invoice ------------------------------------------------------------------------------------------


class IntegrationRef(_Model):
    name: DnsName


def integration_ref_name(spec: Mapping[str, Any] | None) -> str:
    """``spec.integrationRef.name`` of an invoice (a raw spec, which may lack it): "" when it has none."""
    return str(((spec or {}).get("integrationRef") or {}).get("name") or "")


class Customer(_Model):
    id: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    email: Email
    name: Annotated[str, StringConstraints(max_length=200)] | None = None


class LineItem(_Model):
    description: Annotated[str, StringConstraints(min_length=1, max_length=250)]
    quantity: Annotated[int, Field(ge=1, le=1_000_000, strict=True)]
    unit_amount: AmountString

    @property
    def unit_amount_decimal(self) -> Decimal:
        return money.parse_amount(self.unit_amount)


InvoiceState = Literal["Draft", "Finalized", "Void"]
InvoicePhase = Literal["Draft", "Finalized", "Open", "Paid", "Refunded", "Void", "Failed"]


class InvoiceSpec(_Model):
    integration_ref: IntegrationRef
    customer: Customer
    currency: Currency
    line_items: Annotated[list[LineItem], Field(min_length=1, max_length=20)]
    state: InvoiceState = "Draft"
    # a date (due at the end of that day, UTC) or an RFC 3339 time with an offset: ``due_moment`` reads it
    due_date: DueDate | None = None
    memo: Annotated[str, StringConstraints(max_length=500)] | None = None
    reminders: Reminders | None = None

    @field_validator("line_items")
    @classmethod
    def _amounts_fit_currency(cls, items: list[LineItem], info) -> list[LineItem]:
        currency = info.data.get("currency")
        if currency is None:
            return items
        for index, item in enumerate(items):
            try:
                money.to_minor(item.unit_amount, currency)
            except money.MoneyError as exc:
                raise ValueError(f"lineItems[{index}].unitAmount: {exc}") from None
        return items

    def total_minor(self) -> int:
        return money.total_minor([(i.quantity, i.unit_amount) for i in self.line_items], self.currency)


class AmountDue(_Model):
    minor: int
    amount: str
    currency: Currency
    display: str


LinkReason = Literal["Finalized", "PaymentFailed", "LinkDeactivated"]
MAX_PAYMENT_LINKS = 20  # the first link and up to 19 replacements


class PaymentLinkRef(_Model):
    id: Annotated[str, StringConstraints(max_length=255)]
    url: Annotated[str, StringConstraints(max_length=2048)]
    active: bool | None = None
    created_at: Timestamp | None = None
    attempt: Annotated[int, Field(ge=1, le=MAX_PAYMENT_LINKS)] | None = None
    reason: LinkReason | None = None
    checked_error: Annotated[str, StringConstraints(max_length=255)] | None = None


class LinkRequest(_Model):
    attempt: Annotated[int, Field(ge=1, le=MAX_PAYMENT_LINKS)] | None = None
    reason: LinkReason | None = None
    replaces_link_id: Annotated[str, StringConstraints(max_length=255)] | None = None
    requested_at: Timestamp | None = None


class Notification(_Model):
    link_id: str | None = None
    sent_at: Timestamp | None = None
    message_id: str | None = None
    attempts: int | None = None


class Payment(_Model):
    provider_payment_id: str
    amount: str
    amount_minor: int
    currency: Currency
    paid_at: Timestamp
    event_id: str | None = None
    event_type: str | None = None
    source: Literal["webhook", "reconciliation"]


class PendingPayment(_Model):
    checkout_session_id: str | None = None
    event_id: str | None = None
    since: Timestamp | None = None


class PaymentError(_Model):
    message: str | None = None
    code: str | None = None
    event_id: str | None = None
    event_type: str | None = None
    at: Timestamp | None = None
    provider_payment_id: Annotated[str, StringConstraints(max_length=255)] | None = None
    checkout_session_id: Annotated[str, StringConstraints(max_length=255)] | None = None


MAX_REFUNDS = 100
MAX_REMINDERS = 20


class InvoiceStatus(_Model):
    phase: InvoicePhase | None = None
    observed_generation: int | None = None
    amount_due: AmountDue | None = None
    payment_link: PaymentLinkRef | None = None
    payment_links: Annotated[list[PaymentLinkRef], Field(max_length=MAX_PAYMENT_LINKS)] = Field(default_factory=list)
    link_request: LinkRequest | None = None
    notification: Notification | None = None
    payment: Payment | None = None
    pending_payment: PendingPayment | None = None
    last_payment_error: PaymentError | None = None
    refunds: Annotated[list[Refund], Field(max_length=MAX_REFUNDS)] = Field(default_factory=list)
    amount_refunded: AmountDue | None = None
    charge_refunded: ChargeRefunded | None = None
    dispute: Dispute | None = None
    receipt: Receipt | None = None
    reminders: Annotated[list[ReminderRecord], Field(max_length=MAX_REMINDERS)] = Field(default_factory=list)
    processed_events: Annotated[list[str], Field(max_length=64)] = Field(default_factory=list)
    conditions: list[Condition] = Field(default_factory=list)


def amount_due(spec: InvoiceSpec) -> AmountDue:
    minor = spec.total_minor()
    return AmountDue(
        minor=minor,
        amount=str(money.from_minor(minor, spec.currency)),
        currency=spec.currency,
        display=money.format_minor(minor, spec.currency),
    )


# --- whole objects, for validating manifests ---------------------------------------------------------


class ObjectMeta(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: DnsName | None = None
    namespace: str | None = None


class StripeIntegration(_Model):
    api_version: Literal["billing.fluxrate.co/v1alpha1"]
    kind: Literal["StripeIntegration"]
    metadata: ObjectMeta
    spec: StripeIntegrationSpec
    status: StripeIntegrationStatus | None = None


class Invoice(_Model):
    api_version: Literal["billing.fluxrate.co/v1alpha1"]
    kind: Literal["Invoice"]
    metadata: ObjectMeta
    spec: InvoiceSpec
    status: InvoiceStatus | None = None
