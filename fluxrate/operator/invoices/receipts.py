"""Emailing the customer one receipt per payment, under the invoice email's contract: at-least-once, a stable
``Message-ID`` (``<receipt.{paymentId}.{uid}@fluxrate.invoice>``), recorded in ``status.receipt`` after the SMTP
server accepted it, an SMTP failure counted (``attempts``) and retried with backoff.

It runs from ``invoice_event`` when an invoice is paid (at most ``RECEIPT_TRIES_IN_EVENT`` tries there), then from
the reconciliation daemon, which keeps the invoice scheduled while ``receipt_state`` says a receipt is owed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import aiosmtplib
import stripe
from pydantic import ValidationError

from fluxrate import conditions as cond
from fluxrate import models
from fluxrate.decision import Decision, Event, backoff
from fluxrate.models import integration_ref_name
from fluxrate.operator.email import send_email
from fluxrate.operator.events import post_events
from fluxrate.operator.invoices.status import InvoiceObject, StatusWriter
from fluxrate.operator.receipt_email import PaymentDetails, build_receipt_email, payment_details
from fluxrate.operator.stripe_clients import IntegrationClient
from fluxrate.stripe_errors import is_not_found

if TYPE_CHECKING:
    from fluxrate.operator.runtime import Runtime

# Only a payment recorded this recently gets a receipt. An upgrade to a fluxrate with receipts, or an operator that
# was down for longer, must not email customers about payments made long ago; and resuming thousands of Paid
# invoices must send nothing and cost nothing (this is decided from the watched status alone, without a request).
# A receipt that could not be sent within the window is given up (``skipped: Expired``).
RECEIPT_WINDOW = dt.timedelta(days=3)
# Failed tries after which a failed Stripe read no longer holds the receipt back: it is sent without the payment
# method and Stripe's receipt URL.
DETAIL_ATTEMPTS = 3
RECEIPT_TRIES_IN_EVENT = 3  # tries within the invoice event (Event handlers are not retried by kopf); then the daemon

ReceiptState = Literal["send", "retry", "expire"]

logger = logging.getLogger(__name__)


def _moment(value: Any) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def receipt_state(status: Mapping[str, Any], now: dt.datetime | None = None) -> ReceiptState | None:
    """What the invoice's receipt needs, from its status alone: ``send`` (none tried yet), ``retry`` (tries
    failed), ``expire`` (tries failed for longer than ``RECEIPT_WINDOW``: record that it was given up), or None.

    None for an invoice not Paid (a Refunded one gets no receipt if it had none), one whose receipt for its payment
    was sent or skipped, and one whose payment was recorded before the window without any try since.
    """
    if status.get("phase") != "Paid":
        return None
    payment = status.get("payment")
    if not isinstance(payment, Mapping) or not payment.get("providerPaymentId"):
        return None
    record = status.get("receipt") or {}
    mine = record.get("paymentId") == payment["providerPaymentId"]
    if mine and (record.get("sentAt") or record.get("skipped")):
        return None
    paid_at = _moment(payment.get("paidAt"))
    if paid_at is None or paid_at.tzinfo is None:
        return None
    tried = mine and int(record.get("attempts") or 0) > 0
    if (now or cond.now()) - paid_at > RECEIPT_WINDOW:
        return "expire" if tried else None
    return "retry" if tried else "send"


def receipt_record(payment_id: str, *, attempts: int, sent_at: str | None = None, message_id: str | None = None,
                   skipped: str | None = None) -> dict[str, Any]:
    """Every field, so a merge patch leaves nothing of an earlier record behind."""
    return {"paymentId": payment_id, "sentAt": sent_at, "messageId": message_id, "attempts": attempts,
            "skipped": skipped}


SKIPPED_MESSAGES = {
    "ReceiptsDisabled": "receipts are turned off on StripeIntegration {integration} (spec.receipts.enabled: false)",
    "SmtpNotConfigured": "no SMTP server is configured on the operator",
    "Expired": "it could not be sent within {window} of the payment",
}


class Receipts(StatusWriter):
    async def send_receipt(self, obj: InvoiceObject) -> Decision:
        """Send the receipt the invoice is owed, if it still is (decided on a fresh read), and record it."""
        result = Decision()
        latest = await self.kube.get_object("invoices", obj.namespace, obj.name)
        if latest is None:
            return result
        obj.latest = latest
        status = latest.get("status") or {}
        state = receipt_state(status)
        if state is None:
            return result
        payment: Mapping[str, Any] = status["payment"]
        payment_id = str(payment["providerPaymentId"])
        record = status.get("receipt") or {}
        attempts = int(record.get("attempts") or 0) if record.get("paymentId") == payment_id else 0
        skipped = "Expired" if state == "expire" else await self._skip_reason(latest)
        if skipped is not None:
            await self._skip(obj, latest, payment_id, attempts, skipped, result)
            return result
        try:
            spec = models.InvoiceSpec.model_validate(dict(latest.get("spec") or {}))
        except ValidationError:
            return result  # a paid invoice's spec is immutable and was valid; nothing to address a receipt to
        if payment_id.startswith("pi_") and not self._connected(latest):
            # not a failed try: a restarted operator has not connected the integration yet; the invoice waits for
            # it (``waiting.waits_for``) and is woken when it connects
            return result
        details = await self._details(obj, latest, payment_id, attempts)
        if details is None:
            await self._failed(obj, payment_id, attempts, "Stripe could not be asked about the payment method",
                               result)
            return result
        message = build_receipt_email(name=obj.name, uid=obj.uid, spec=spec, payment=payment, details=details,
                                      from_address=self.config.smtp.from_address)
        try:
            await send_email(message, self.config.smtp)
        except (aiosmtplib.SMTPException, OSError) as exc:
            code = getattr(exc, "code", None)
            reason = f"{type(exc).__name__}{f' {code}' if code else ''}: {getattr(exc, 'message', '') or exc}"[:300]
            await self._failed(obj, payment_id, attempts, f"Emailing {spec.customer.email} failed ({reason})", result)
            return result
        await self.write(obj, {"receipt": receipt_record(payment_id, attempts=attempts, sent_at=cond.timestamp(),
                                                         message_id=message["Message-ID"])}, [])
        result.events.append(Event("Normal", "ReceiptSent", f"Emailed the receipt for {payment_id} to "
                                   f"{spec.customer.email}{f' ({details.method})' if details.method else ''}."))
        return result

    def _connected(self, invoice: Mapping[str, Any]) -> bool:
        entry = self.clients.get(invoice["metadata"]["namespace"], integration_ref_name(invoice.get("spec")))
        return entry is not None and entry.ready

    async def _skip_reason(self, invoice: Mapping[str, Any]) -> str | None:
        name = integration_ref_name(invoice.get("spec"))
        integration = await self.kube.get_object("stripeintegrations", invoice["metadata"]["namespace"], name) \
            if name else None
        if (((integration or {}).get("spec") or {}).get("receipts") or {}).get("enabled") is False:
            return "ReceiptsDisabled"
        if not self.config.smtp.configured:
            return "SmtpNotConfigured"
        return None

    async def _skip(self, obj: InvoiceObject, invoice: Mapping[str, Any], payment_id: str, attempts: int,
                    skipped: str, result: Decision) -> None:
        await self.write(obj, {"receipt": receipt_record(payment_id, attempts=attempts, skipped=skipped)}, [])
        why = SKIPPED_MESSAGES[skipped].format(integration=integration_ref_name(invoice.get("spec")),
                                               window=f"{RECEIPT_WINDOW.days} days")
        result.events.append(Event("Warning" if skipped == "Expired" else "Normal", "ReceiptSkipped",
                                   f"No receipt was emailed for {payment_id}: {why}."))

    async def _failed(self, obj: InvoiceObject, payment_id: str, attempts: int, what: str, result: Decision) -> None:
        await self.write(obj, {"receipt": receipt_record(payment_id, attempts=attempts + 1)}, [])
        result.retry_after = backoff(self.config.retry_delay, attempts, doublings=6)
        result.retry_message = f"{what}; the receipt is retried with backoff."
        result.events.append(Event("Warning", "ReceiptFailed", result.retry_message))

    async def _details(self, obj: InvoiceObject, invoice: Mapping[str, Any], payment_id: str,
                       attempts: int) -> PaymentDetails | None:
        """The payment method and receipt URL, with one Stripe call; None: retry (Stripe failed, tries are left)."""
        if not payment_id.startswith("pi_"):
            return PaymentDetails()  # recorded from an event that named no PaymentIntent
        entry = self.clients.get(obj.namespace, integration_ref_name(invoice.get("spec")))
        try:
            if entry is None:
                raise LookupError("the integration is not connected")
            return await fetch_payment_details(entry, payment_id)
        except (stripe.StripeError, LookupError) as exc:
            if (isinstance(exc, stripe.StripeError) and is_not_found(exc)) or attempts + 1 >= DETAIL_ATTEMPTS:
                logger.warning("[%s/%s] The receipt for %s goes without the payment method (%s).", obj.namespace,
                               obj.name, payment_id, type(exc).__name__)
                return PaymentDetails()
            return None


async def fetch_payment_details(entry: IntegrationClient, payment_id: str) -> PaymentDetails:
    """The payment method and Stripe's receipt URL of a PaymentIntent: one request, its latest Charge expanded."""
    intent = await entry.call(lambda c: c.v1.payment_intents.retrieve_async(
        payment_id, params={"expand": ["latest_charge"]}))
    return payment_details(intent.to_dict())


async def deliver_receipt(runtime: Runtime, body: Mapping[str, Any], *, tries: int = 1) -> None:
    """``Receipts.send_receipt`` under the invoice's lock, tried up to ``tries`` times with backoff in between."""
    meta = body["metadata"]
    for attempt in range(tries):
        async with runtime.lock("invoice", meta["namespace"], meta["name"]):
            result = await runtime.invoices.send_receipt(InvoiceObject.of(body))
        post_events(body, result.events)
        if result.retry_after is None:
            return
        if attempt + 1 < tries:
            await asyncio.sleep(min(result.retry_after, 30.0))  # already backed off by the attempts recorded
