"""Reconciling an Invoice: one Payment Link when finalized, one email per link, deactivation when it must
not be paid again, and a poll of Stripe for payments whose webhook was missed.

Every status write goes through ``invoice_status.update_status`` (read latest, compute, write with the
resourceVersion), so nothing here can turn a Paid invoice back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiosmtplib
import stripe
from pydantic import ValidationError

from fluxrate import conditions as cond
from fluxrate import models
from fluxrate.invoice_status import update_status
from fluxrate.kube import Kube
from fluxrate.operator.email import build_invoice_email, send_email
from fluxrate.operator.payment_links import (
    build_payment_link_params,
    payment_link_idempotency_key,
    unusable_because,
)
from fluxrate.operator.settings import OperatorSettings
from fluxrate.operator.stripe_clients import IntegrationClient, StripeClients
from fluxrate.payments import Decision, apply_report, report_from_object
from fluxrate.stripe_errors import is_not_found, is_retryable, user_message

Event = tuple[str, str, str]  # (type, reason, message)
Values = Mapping[str, Any] | Callable[[Mapping[str, Any]], Mapping[str, Any]]


@dataclass
class Result:
    events: list[Event] = field(default_factory=list)
    retry_after: float | None = None
    retry_message: str = ""


@dataclass
class InvoiceObject:
    namespace: str
    name: str
    uid: str
    generation: int
    body: Mapping[str, Any]
    # The newest version this reconcile has seen or written: the next write starts from it instead of a read
    # (a stale one only costs a 409 and a re-read inside update_status).
    latest: Mapping[str, Any] | None = None

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> InvoiceObject:
        meta = body["metadata"]
        return cls(meta["namespace"], meta["name"], meta["uid"], int(meta.get("generation") or 1), body, body)

    @property
    def status(self) -> Mapping[str, Any]:
        return self.body.get("status") or {}


def _with_conditions(
    obj: Mapping[str, Any], updates: list[cond.Condition], remove: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    status = obj.get("status") or {}
    return cond.merge(status.get("conditions"), updates, generation=obj["metadata"].get("generation"), remove=remove)


def _changes(obj: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any] | None:
    """Only the fields that differ, so a no-op reconcile writes nothing."""
    status = obj.get("status") or {}
    diff = {key: value for key, value in values.items() if status.get(key) != value}
    return diff or None


def _ready(status: cond.Status, reason: str, message: str) -> cond.Condition:
    return cond.Condition(cond.READY, status, reason, message)


class Reconciler:
    def __init__(self, kube: Kube, clients: StripeClients, config: OperatorSettings) -> None:
        self.kube = kube
        self.clients = clients
        self.config = config

    async def write(self, obj: InvoiceObject, new_values: Values, conditions: list[cond.Condition],
                    remove: tuple[str, ...] = ()) -> dict[str, Any]:
        """``new_values``: the status fields to set, or a function computing them from the latest status."""
        def mutate(latest: dict[str, Any]) -> dict[str, Any] | None:
            values = new_values(latest.get("status") or {}) if callable(new_values) else new_values
            if (latest.get("status") or {}).get("phase") == "Paid" and values.get("phase") not in (None, "Paid"):
                return None  # someone recorded the payment meanwhile: never go back
            merged = {**values, "observedGeneration": latest["metadata"].get("generation")}
            if conditions or remove:
                merged["conditions"] = _with_conditions(latest, conditions, remove)
            return _changes(latest, merged)

        initial = dict(obj.latest) if obj.latest is not None else None
        written, _ = await update_status(self.kube, obj.namespace, obj.name, mutate, initial=initial)
        obj.latest = written
        return written

    # --- the main reconcile ---------------------------------------------------------------------------

    async def reconcile(self, obj: InvoiceObject) -> Result:
        result = Result()
        try:
            spec = models.InvoiceSpec.model_validate(dict(obj.body.get("spec") or {}))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            phase = "Failed" if (obj.body.get("spec") or {}).get("state") == "Finalized" else "Draft"
            await self.write(obj, {"phase": phase}, [_ready("False", "InvalidSpec", f"Fix the invoice: {problems}")])
            return result
        due = models.amount_due(spec).to_k8s()
        phase = obj.status.get("phase")

        if spec.state == "Draft":
            await self.write(obj, {"phase": "Draft", "amountDue": due}, [_ready(
                "False", "Draft", "The invoice is a draft: set spec.state to Finalized to send the payment link.")])
            return result
        if spec.state == "Void":
            return await self.void(obj, spec, due)
        # Finalized
        if phase == "Paid":
            return await self.deactivate_if_needed(obj, spec, "the invoice is paid")
        if phase in ("Failed", "Void"):
            return result
        link = obj.status.get("paymentLink")
        if not link:
            link = await self.create_link(obj, spec, due, result)
            if link is None:
                return result
        await self.notify(obj, spec, link, result)
        return result

    async def integration_client(
        self, obj: InvoiceObject, spec: models.InvoiceSpec
    ) -> tuple[IntegrationClient | None, cond.Condition, models.StripeIntegrationSpec | None]:
        """The connected client, from the in-memory registry the integration handler fills before it pokes us."""
        name = spec.integration_ref.name
        integration = await self.kube.get_object("stripeintegrations", obj.namespace, name)
        if integration is None:
            return None, cond.Condition("IntegrationReady", "False", "IntegrationNotFound",
                                        f'StripeIntegration "{name}" not found in namespace {obj.namespace}: '
                                        "create it, or fix spec.integrationRef.name (it is immutable once "
                                        "finalized: void this invoice and create a new one)."), None
        integration_spec = models.StripeIntegrationSpec.model_validate(dict(integration.get("spec") or {}))
        if not integration_spec.active:
            return None, cond.Condition("IntegrationReady", "False", "IntegrationDisabled",
                                        f'StripeIntegration "{name}" is disabled (spec.active: false): the invoice '
                                        "waits and proceeds when it is re-activated."), integration_spec
        entry = self.clients.get(obj.namespace, name)
        if entry is None or not entry.ready:
            ready = cond.get((integration.get("status") or {}).get("conditions"), cond.READY)
            detail = f"{ready['reason']}: {ready['message']}" if ready and ready["status"] != "True" else "connecting"
            return None, cond.Condition("IntegrationReady", "False", "IntegrationNotReady",
                                        f'StripeIntegration "{name}" is not Ready ({detail}); the invoice proceeds '
                                        "when it is."), integration_spec
        return entry, cond.Condition("IntegrationReady", "True", "IntegrationReady",
                                     f'StripeIntegration "{name}" is Ready.'), integration_spec

    async def create_link(
        self, obj: InvoiceObject, spec: models.InvoiceSpec, due: dict[str, Any], result: Result
    ) -> dict[str, Any] | None:
        # kopf may hand a handler an older body than the last one it processed (its own annotation patch not yet
        # seen on the watch after consistency_timeout, as under a burst of a thousand invoices): a link a previous
        # run created would be created again, an idempotent replay that still spends a request of the Stripe budget.
        fresh = await self.kube.get_object("invoices", obj.namespace, obj.name)
        if fresh is not None:
            obj.latest = fresh
            existing = (fresh.get("status") or {}).get("paymentLink")
            if existing:
                return dict(existing)
        entry, integration_condition, integration_spec = await self.integration_client(obj, spec)
        if entry is None or integration_spec is None:
            await self.write(obj, {"phase": "Finalized", "amountDue": due}, [
                _ready("False", integration_condition.reason, integration_condition.message), integration_condition])
            return None
        # Recorded before the request: a run that finds it (the previous one died, or its status write failed,
        # after Stripe created the link) looks for the link before creating one, which still holds when the
        # Idempotency-Key has expired (Stripe keeps keys for 24 hours).
        request = ((fresh or obj.body).get("status") or {}).get("linkRequest") or {}
        resuming = request.get("attempt") == 1
        marker = {"attempt": 1, "reason": "Finalized",
                  "requestedAt": request.get("requestedAt") if resuming else cond.timestamp()}
        await self.write(obj, {"phase": "Finalized", "amountDue": due, "linkRequest": marker}, [integration_condition])
        created = await self.obtain_link(obj, entry, spec, integration_spec, 1, (), resuming, result)
        if created is None:
            return None
        link = {"id": created["id"], "url": created["url"], "active": bool(created.get("active", True)),
                "createdAt": cond.timestamp(), "attempt": 1, "reason": "Finalized"}
        await self.write(obj, {"phase": "Open", "paymentLink": link, "paymentLinks": [link], "linkRequest": None}, [
            _ready("True", "AwaitingPayment", f"Payment link sent; awaiting payment of {due['display']}."),
            cond.Condition("PaymentLinkCreated", "True", "Created", f"Payment link {link['id']}: {link['url']}"),
        ])
        result.events.append(("Normal", "PaymentLinkCreated", f"Payment link {link['id']} for {due['display']}."))
        return link

    async def obtain_link(
        self, obj: InvoiceObject, entry: IntegrationClient, spec: models.InvoiceSpec,
        integration_spec: models.StripeIntegrationSpec, attempt: int, known: tuple[str, ...] | list[str],
        resuming: bool, result: Result,
    ) -> dict[str, Any] | None:
        """The Stripe link of this attempt: the one an earlier run created if there is one, else a new one.

        One mechanism for both ways an earlier link can be missed: the status write after creating it was lost
        (``resuming``: looked up before creating, since its Idempotency-Key may have expired), or Stripe answers
        the create with an IdempotencyError (the parameters changed in between: adopt that link). None after
        writing the condition (and ``result.retry_after`` when it is worth retrying).
        """
        try:
            if resuming:
                found = await self.find_link(entry, obj.uid, exclude=known)
                if found is not None:
                    return found
            after = integration_spec.payment_links.after_completion
            params = build_payment_link_params(obj.namespace, obj.name, obj.uid, spec, after)
            key = payment_link_idempotency_key(obj.uid, attempt)
            try:
                return (await entry.call(lambda c: c.v1.payment_links.create_async(
                    params=params, options={"idempotency_key": key}))).to_dict()
            except stripe.IdempotencyError:
                found = await self.find_link(entry, obj.uid, exclude=known)
                if found is not None:
                    return found
                message = "Stripe reports an earlier attempt for this invoice but its link was not found; retrying."
                await self.write(obj, {}, [_ready("Unknown", "LinkLookupPending", message)])
                result.retry_after, result.retry_message = self.config.retry_delay, message
                return None
        except stripe.StripeError as exc:
            if is_retryable(exc):
                message = f"Stripe is unavailable ({type(exc).__name__}); retrying with backoff."
                await self.write(obj, {}, [_ready("Unknown", "StripeUnavailable", message)])
                result.retry_after, result.retry_message = self.config.retry_delay, message
                return None
            message = f"Stripe refused the payment link: {user_message(exc)}"
            failed = cond.Condition("PaymentLinkCreated", "False", "StripeRejected", message)
            if attempt == 1:
                await self.write(obj, {"phase": "Failed", "linkRequest": None},
                                 [_ready("False", "StripeRejected", message), failed])
            else:  # an Open invoice stays Open (phases only move forward); the next reconciliation tries again
                await self.write(obj, {"linkRequest": None}, [failed])
            result.events.append(("Warning", "StripeRejected", message))
            return None

    async def find_link(self, entry: IntegrationClient, uid: str, exclude: tuple[str, ...] | list[str] = (),
                        scan: int = 1000) -> dict[str, Any] | None:
        """The invoice's newest link that is not one of ``exclude`` (those already recorded), among the account's
        newest ``scan`` links: Stripe has no search of payment links by metadata."""
        params: dict[str, Any] = {"limit": 100}
        seen = 0
        while seen < scan:
            page = await entry.call(lambda c: c.v1.payment_links.list_async(params=dict(params)))
            for link in page.data:
                data = link.to_dict()
                if (data.get("metadata") or {}).get("invoice_uid") == uid and data.get("id") not in exclude:
                    return data
            seen += len(page.data)
            if not page.has_more or not page.data:
                break
            params["starting_after"] = page.data[-1].id
        return None

    async def notify(self, obj: InvoiceObject, spec: models.InvoiceSpec, link: Mapping[str, Any],
                     result: Result) -> None:
        seen = ((obj.latest or obj.body).get("status") or {}).get("notification") or {}
        if seen.get("linkId") == link["id"] and seen.get("sentAt"):
            return  # a record of the send is never removed: even an old body that shows it is right
        # A fresh read: it decides whether to send, and makes the write that records the send conflict-free, so
        # the window between the SMTP server's acceptance and that record (a crash there resends) stays minimal.
        latest = await self.kube.get_object("invoices", obj.namespace, obj.name) or obj.body
        obj.latest = latest
        notification = (latest.get("status") or {}).get("notification") or {}
        if notification.get("linkId") == link["id"] and notification.get("sentAt"):
            return
        smtp = self.config.smtp
        if not smtp.configured:
            await self.write(obj, {}, [cond.Condition(
                "CustomerNotified", "False", "SmtpNotConfigured",
                f"No SMTP server is configured on the operator, so {spec.customer.email} was not emailed: send them "
                f"the payment link yourself ({link['url']}) or configure SMTP.")])
            return
        message = build_invoice_email(name=obj.name, uid=obj.uid, spec=spec, link_id=link["id"],
                                      link_url=link["url"], from_address=smtp.from_address,
                                      replaces_because=link.get("reason") if (link.get("attempt") or 1) > 1 else None)
        attempts = int(notification.get("attempts") or 0) if notification.get("linkId") == link["id"] else 0
        try:
            await send_email(message, smtp)
        except (aiosmtplib.SMTPException, OSError) as exc:
            code = getattr(exc, "code", None)
            reason = f"{type(exc).__name__}{f' {code}' if code else ''}: {getattr(exc, 'message', '') or exc}"[:300]
            text = f"Emailing {spec.customer.email} failed ({reason}); retrying with backoff. Payment is not held up."
            await self.write(obj, {"notification": {"linkId": link["id"], "attempts": attempts + 1}},
                             [cond.Condition("CustomerNotified", "False", "SmtpFailed", text)])
            result.retry_after = min(self.config.retry_delay * 2 ** min(attempts, 6), 600.0)
            result.retry_message = text
            return
        sent = f"Emailed the payment link to {spec.customer.email}."
        await self.write(obj, {"notification": {
            "linkId": link["id"], "sentAt": cond.timestamp(), "messageId": message["Message-ID"], "attempts": attempts,
        }}, [cond.Condition("CustomerNotified", "True", "EmailSent", sent)])
        result.events.append(("Normal", "CustomerNotified", sent))

    # --- stop a link from being paid again ----------------------------------------------------------

    def _entry_for(self, obj: InvoiceObject, spec: models.InvoiceSpec | None) -> tuple[str | None, Any]:
        integration = (spec.integration_ref.name if spec else
                       (obj.body.get("spec") or {}).get("integrationRef", {}).get("name"))
        return integration, (self.clients.get(obj.namespace, integration) if integration else None)

    async def deactivate_link(self, obj: InvoiceObject, spec: models.InvoiceSpec | None,
                              links: list[dict[str, Any]] | None = None) -> str | None:
        """Deactivate the invoice's active links (all of them by default) in Stripe; a problem to report, or None."""
        links = active_links(obj.status) if links is None else links
        if not links:
            return None
        integration, entry = self._entry_for(obj, spec)
        if entry is None:
            ids = ", ".join(link["id"] for link in links)
            return f'StripeIntegration "{integration}" is not connected, so link {ids} cannot be deactivated yet'
        for link in links:
            try:
                await entry.call(lambda c, i=link["id"]: c.v1.payment_links.update_async(i, params={"active": False}))
            except stripe.StripeError as exc:
                if is_retryable(exc):
                    return f"Stripe is unavailable ({type(exc).__name__})"
                if not is_not_found(exc):
                    return f"Stripe refused to deactivate link {link['id']}: {user_message(exc)}"
        return None

    async def deactivate_if_needed(self, obj: InvoiceObject, spec: models.InvoiceSpec | None, why: str,
                                   *, replaced_only: bool = False) -> Result:
        """Deactivate the invoice's active links (``replaced_only``: all but the current one) and record it."""
        result = Result()
        current = (obj.status.get("paymentLink") or {}).get("id")
        links = [link for link in active_links(obj.status) if not (replaced_only and link["id"] == current)]
        if not links:
            return result
        problem = await self.deactivate_link(obj, spec, links)
        if problem:
            result.retry_after, result.retry_message = self.config.retry_delay, problem
            return result
        ids = {link["id"] for link in links}
        await self.write(obj, lambda latest: with_links_inactive(latest, ids), [])
        for link in links:
            result.events.append(("Normal", "PaymentLinkDeactivated", f"Deactivated link {link['id']}: {why}."))
        return result

    async def void(self, obj: InvoiceObject, spec: models.InvoiceSpec, due: dict[str, Any]) -> Result:
        if obj.status.get("phase") == "Paid":
            await self.write(obj, {}, [cond.Condition(
                "VoidRefused", "True", "AlreadyPaid",
                "The invoice was paid before it was voided; it stays Paid. Refund the payment in Stripe if needed.")])
            return await self.deactivate_if_needed(obj, spec, "the invoice is paid")
        result = await self.deactivate_if_needed(obj, spec, "the invoice was voided")
        if result.retry_after is not None:
            return result
        await self.write(obj, {"phase": "Void", "amountDue": due, "linkRequest": None}, [
            _ready("True", "Void", "The invoice is void; its payment link no longer accepts payments.")])
        return result

    # --- a replacement for a link that can no longer take a payment ----------------------------------

    async def renew_link(self, obj: InvoiceObject, *, ask_stripe: bool = False) -> Result:
        """Issue a replacement link when Stripe says the current one can no longer take a payment.

        Asked after each payment failure (``lastPaymentError`` not yet checked against this link), and by
        reconciliation (``ask_stripe``: the link may have been deactivated in the Dashboard). A renewal is
        recorded in ``status.linkRequest`` before the request to Stripe, with the attempt number its
        Idempotency-Key is derived from, so a restarted operator finishes it with the same link: one replacement
        per failure. Replaced links still active are deactivated, and the customer is emailed the new link.
        """
        result = Result()
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
                verdict = await self.link_verdict(entry, current["id"])
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
                message = (f"Payment link {current['id']} can no longer take a payment ({why}), and this invoice "
                           f"already had {len(history)} links: void it and create a new Invoice.")
                await self.write(obj, {}, [_ready("False", "TooManyLinks", message)])
                result.events.append(("Warning", "TooManyLinks", message))
                return result
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
        new = {"id": created["id"], "url": created["url"], "active": bool(created.get("active", True)),
               "createdAt": cond.timestamp(), "attempt": attempt, "reason": reason}
        if error.get("eventId"):
            new["checkedError"] = error["eventId"]
        due = status.get("amountDue") or {}
        recorded = await self.write_if_current(
            obj, current["id"], lambda latest: {"paymentLink": new, "paymentLinks": [*link_history(latest), new],
                                                "linkRequest": None}, [
                _ready("True", "AwaitingPayment",
                       f"A new payment link was sent; awaiting payment of {due.get('display', 'the invoice')}."),
                cond.Condition("PaymentLinkCreated", "True", "Renewed",
                               f"Payment link {new['id']} replaces {current['id']} ({why}): {new['url']}")])
        if not recorded:  # paid or voided meanwhile: nobody was sent the new link, and nobody may use it
            await self.deactivate_link(obj, spec, [new])
            return result
        result.events.append(("Normal", "PaymentLinkRenewed",
                              f"Payment link {current['id']} can no longer take a payment ({why}); "
                              f"replaced by {new['id']} (attempt {attempt})."))
        renewed = InvoiceObject(obj.namespace, obj.name, obj.uid, obj.generation, obj.latest or obj.body, obj.latest)
        deactivated = await self.deactivate_if_needed(renewed, spec, "it was replaced", replaced_only=True)
        result.events += deactivated.events
        await self.notify(renewed, spec, new, result)
        if deactivated.retry_after is not None and result.retry_after is None:
            result.retry_after, result.retry_message = deactivated.retry_after, deactivated.retry_message
        return result

    async def link_verdict(self, entry: IntegrationClient, link_id: str) -> tuple[str, str] | None:
        """Stripe's answer: (reason, why) when the link can no longer take a payment and no payment through it is
        paid or under way; None otherwise. A bank debit's completed session counts against the link's limit
        while its payment settles, so a used-up link is renewed only once Stripe reports that payment failed."""
        try:
            link = (await entry.call(lambda c: c.v1.payment_links.retrieve_async(link_id))).to_dict()
        except stripe.StripeError as exc:
            if not is_not_found(exc):
                raise
            return "LinkDeactivated", "Stripe no longer knows it"
        why = unusable_because(link)
        if why is None:
            return None
        sessions = await entry.call(lambda c: c.v1.checkout.sessions.list_async(
            params={"payment_link": link_id, "status": "complete", "limit": 10}))
        failed = 0
        for session in sessions.data:
            data = session.to_dict()
            if data.get("payment_status") != "unpaid":
                return None  # paid: reconciliation records it (a missed webhook), no new link
            intent_id = data.get("payment_intent")
            intent_id = intent_id.get("id") if isinstance(intent_id, Mapping) else intent_id
            if not intent_id:
                return None
            intent = (await entry.call(lambda c, i=intent_id: c.v1.payment_intents.retrieve_async(i))).to_dict()
            if intent.get("status") not in FAILED_INTENT_STATUSES:
                return None  # the bank debit is still settling
            failed += 1
        if failed:
            return "PaymentFailed", f"{why}: a payment through it failed after its Checkout Session completed"
        if link.get("active") is False:
            return "LinkDeactivated", f"{why} in Stripe"
        return None  # used up without a completed session fluxrate can see: not a guess to act on

    async def write_if_current(self, obj: InvoiceObject, link_id: str, new_values: Values,
                               conditions: list[cond.Condition]) -> bool:
        """Write ``values`` only while the invoice is Open and ``link_id`` is its current link: False when it is
        not (paid, voided or renewed meanwhile), so a renewal never lands on an invoice that no longer wants it."""
        refused: list[bool] = []

        def mutate(latest: dict[str, Any]) -> dict[str, Any] | None:
            status = latest.get("status") or {}
            refused.clear()
            if status.get("phase") != "Open" or (status.get("paymentLink") or {}).get("id") != link_id:
                refused.append(True)
                return None
            merged: dict[str, Any] = dict(new_values(status) if callable(new_values) else new_values)
            if conditions:
                merged["conditions"] = _with_conditions(latest, conditions)
            return _changes(latest, merged)

        initial = dict(obj.latest) if obj.latest is not None else None
        written, _ = await update_status(self.kube, obj.namespace, obj.name, mutate, initial=initial)
        obj.latest = written
        return not refused

    # --- missed webhooks ----------------------------------------------------------------------------

    async def find_missed_payment(self, obj: InvoiceObject) -> Decision | None:
        """Ask Stripe for completed Checkout Sessions of the invoice's links (any of them, newest first); record a
        payment the webhook never brought."""
        links = list(reversed(link_history(obj.status)))
        integration = (obj.body.get("spec") or {}).get("integrationRef", {}).get("name")
        entry = self.clients.get(obj.namespace, integration) if integration else None
        if not links or entry is None:
            return None
        decision: Decision | None = None
        for link in links:
            sessions = await entry.call(lambda c, i=link["id"]: c.v1.checkout.sessions.list_async(
                params={"payment_link": i, "status": "complete", "limit": 10}))
            for session in sessions.data:
                data = session.to_dict()
                if data.get("payment_status") not in ("paid", "no_payment_required"):
                    continue
                report = report_from_object("checkout.session.completed", data, event_id=data["id"],
                                            source="reconciliation")
                if report is None:
                    continue
                decision, _ = await apply_report(self.kube, obj.namespace, report, integration=integration)
                if decision.outcome == "applied":
                    return decision
        return decision


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


def jitter_delay(interval: float, seed: str) -> float:
    """A stable spread of first runs over the interval, so timers of many invoices do not fire together."""
    return (int.from_bytes(seed.encode()[-4:].ljust(4, b"\0"), "big") % 1000) / 1000 * interval
