"""A replacement for a payment link that can no longer take a payment, asked of Stripe after a payment failure
or by reconciliation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import stripe
from pydantic import ValidationError

from fluxrate import conditions as cond
from fluxrate import models
from fluxrate.decision import Decision, Event
from fluxrate.operator.invoices.deactivation import Deactivation
from fluxrate.operator.invoices.link_creation import LinkCreation
from fluxrate.operator.invoices.links import FAILED_INTENT_STATUSES, link_history, with_link
from fluxrate.operator.invoices.notification import Notification
from fluxrate.operator.invoices.status import InvoiceObject, ready
from fluxrate.operator.payment_links import unusable_because
from fluxrate.operator.stripe_budget import Priority
from fluxrate.operator.stripe_clients import IntegrationClient
from fluxrate.stripe_errors import is_not_found, is_retryable

ASKED = {False: Priority.LINKS, True: Priority.BACKGROUND}  # reconciliation asking Stripe is background work


class LinkRenewal(LinkCreation, Notification, Deactivation):
    async def renew_link(self, obj: InvoiceObject, *, ask_stripe: bool = False) -> Decision:
        """Issue a replacement link when Stripe says the current one can no longer take a payment.

        Asked after each payment failure (``lastPaymentError`` not yet checked against this link), and by
        reconciliation (``ask_stripe``: the link may have been deactivated in the Dashboard). A renewal is
        recorded in ``status.linkRequest`` before the request to Stripe, with the attempt number its
        Idempotency-Key is derived from, so a restarted operator finishes it with the same link: one replacement
        per failure. Replaced links still active are deactivated, and the customer is emailed the new link.
        """
        result = Decision()
        status = obj.status
        try:
            spec = models.InvoiceSpec.model_validate(dict(obj.body.get("spec") or {}))
        except ValidationError:
            return result
        current = status.get("paymentLink") or {}
        if spec.state != "Finalized" or status.get("phase") != "Open" or not current:
            return result
        history = link_history(status)
        attempt = len(history) + 1
        request = status.get("linkRequest") or {}
        resuming = request.get("attempt") == attempt and request.get("replacesLinkId") == current["id"]
        error = status.get("lastPaymentError") or {}
        unchecked = bool(error.get("eventId")) and current.get("checkedError") != error["eventId"]
        if not (resuming or unchecked or ask_stripe) or (status.get("pendingPayment") and not resuming):
            return await self.deactivate_if_needed(obj, spec, "it was replaced", replaced_only=True)
        entry, integration_condition, integration_spec = await self.integration_client(obj, spec)
        if entry is None or integration_spec is None:
            result.retry_after, result.retry_message = self.config.retry_delay, integration_condition.message
            return result
        reason = request.get("reason") or "PaymentFailed"
        if not resuming:
            try:
                # after a payment failure a customer waits for the new link: LINKS
                verdict = await self.link_verdict(entry, current["id"], ASKED[ask_stripe and not unchecked])
            except stripe.StripeError as exc:
                if is_retryable(exc):
                    result.retry_after = self.config.retry_delay
                    result.retry_message = f"Stripe is unavailable ({type(exc).__name__})"
                    return result
                raise
            if verdict is None:  # the link still takes a payment, or a payment through it is under way
                if unchecked:
                    checked = {**current, "checkedError": error["eventId"]}
                    await self.write_if_current(obj, current["id"], lambda latest: with_link(latest, checked), [])
                return await self.deactivate_if_needed(obj, spec, "it was replaced", replaced_only=True)
            reason, why = verdict
            if attempt > models.MAX_PAYMENT_LINKS:
                return await self._too_many_links(obj, current["id"], why, len(history), result)
            marker = {"attempt": attempt, "reason": reason, "replacesLinkId": current["id"],
                      "requestedAt": cond.timestamp()}
            if not await self.write_if_current(obj, current["id"], {"linkRequest": marker}, []):
                return result
        else:
            why = "it was being replaced when the operator stopped"
        created = await self.obtain_link(obj, entry, spec, integration_spec, attempt,
                                         [link["id"] for link in history], resuming, result)
        if created is None:
            return result
        return await self._record_renewal(obj, spec, current, created, (attempt, reason, why), result)

    async def _record_renewal(
        self, obj: InvoiceObject, spec: models.InvoiceSpec, current: Mapping[str, Any], created: Mapping[str, Any],
        renewal: tuple[int, str, str], result: Decision,
    ) -> Decision:
        """Record the new link as the current one (unless the invoice no longer wants it), deactivate the replaced
        links and email the new one."""
        attempt, reason, why = renewal
        status = obj.status
        error = status.get("lastPaymentError") or {}
        new = {"id": created["id"], "url": created["url"], "active": bool(created.get("active", True)),
               "createdAt": cond.timestamp(), "attempt": attempt, "reason": reason}
        if error.get("eventId"):
            new["checkedError"] = error["eventId"]
        due = status.get("amountDue") or {}
        recorded = await self.write_if_current(
            obj, current["id"], lambda latest: {"paymentLink": new, "paymentLinks": [*link_history(latest), new],
                                                "linkRequest": None}, [
                ready("True", "AwaitingPayment",
                       f"A new payment link was sent; awaiting payment of {due.get('display', 'the invoice')}."),
                cond.Condition("PaymentLinkCreated", "True", "Renewed",
                               f"Payment link {new['id']} replaces {current['id']} ({why}): {new['url']}")])
        if not recorded:  # paid or voided meanwhile: nobody was sent the new link, and nobody may use it
            await self.deactivate_link(obj, spec, [new])
            return result
        result.events.append(Event("Normal", "PaymentLinkRenewed",
                              f"Payment link {current['id']} can no longer take a payment ({why}); "
                              f"replaced by {new['id']} (attempt {attempt})."))
        renewed = InvoiceObject(obj.namespace, obj.name, obj.uid, obj.generation, obj.latest or obj.body, obj.latest,
                                obj.fresh)
        deactivated = await self.deactivate_if_needed(renewed, spec, "it was replaced", replaced_only=True)
        result.events += deactivated.events
        await self.notify(renewed, spec, new, result)
        if deactivated.retry_after is not None and result.retry_after is None:
            result.retry_after, result.retry_message = deactivated.retry_after, deactivated.retry_message
        return result

    async def _too_many_links(self, obj: InvoiceObject, link_id: str, why: str, links: int,
                              result: Decision) -> Decision:
        message = (f"Payment link {link_id} can no longer take a payment ({why}), and this invoice "
                   f"already had {links} links: void it and create a new Invoice.")
        await self.write(obj, {}, [ready("False", "TooManyLinks", message)])
        result.events.append(Event("Warning", "TooManyLinks", message))
        return result

    async def link_verdict(self, entry: IntegrationClient, link_id: str,
                           priority: Priority = Priority.LINKS) -> tuple[str, str] | None:
        """Stripe's answer: (reason, why) when the link can no longer take a payment and no payment through it is
        paid or under way; None otherwise. A bank debit's completed session counts against the link's limit
        while its payment settles, so a used-up link is renewed only once Stripe reports that payment failed."""
        try:
            link = (await entry.call(lambda c: c.v1.payment_links.retrieve_async(link_id), priority=priority)).to_dict()
        except stripe.StripeError as exc:
            if not is_not_found(exc):
                raise
            return "LinkDeactivated", "Stripe no longer knows it"
        why = unusable_because(link)
        if why is None:
            return None
        sessions = await entry.call(lambda c: c.v1.checkout.sessions.list_async(
            params={"payment_link": link_id, "status": "complete", "limit": 10}), priority=priority)
        failed = 0
        for session in sessions.data:
            data = session.to_dict()
            if data.get("payment_status") != "unpaid":
                return None  # paid: reconciliation records it (a missed webhook), no new link
            intent_id = data.get("payment_intent")
            intent_id = intent_id.get("id") if isinstance(intent_id, Mapping) else intent_id
            if not intent_id:
                return None
            intent = (await entry.call(lambda c, i=intent_id: c.v1.payment_intents.retrieve_async(i),
                                       priority=priority)).to_dict()
            if intent.get("status") not in FAILED_INTENT_STATUSES:
                return None  # the bank debit is still settling
            failed += 1
        if failed:
            return "PaymentFailed", f"{why}: a payment through it failed after its Checkout Session completed"
        if link.get("active") is False:
            return "LinkDeactivated", f"{why} in Stripe"
        return None  # used up without a completed session fluxrate can see: not a guess to act on
