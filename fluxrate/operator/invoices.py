"""Reconciling an Invoice: one Payment Link when finalized, one email per link, deactivation when it must
not be paid again, and a poll of Stripe for payments whose webhook was missed.

Every status write goes through ``invoice_status.update_status`` (read latest, compute, write with the
resourceVersion), so nothing here can turn a Paid invoice back.
"""

from __future__ import annotations

from collections.abc import Mapping
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
from fluxrate.operator.payment_links import build_payment_link_params, payment_link_idempotency_key
from fluxrate.operator.settings import OperatorSettings
from fluxrate.operator.stripe_clients import IntegrationClient, StripeClients
from fluxrate.payments import Decision, apply_report, report_from_object
from fluxrate.stripe_errors import is_not_found, is_retryable, user_message

Event = tuple[str, str, str]  # (type, reason, message)


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

    async def write(self, obj: InvoiceObject, values: Mapping[str, Any], conditions: list[cond.Condition],
                    remove: tuple[str, ...] = ()) -> dict[str, Any]:
        def mutate(latest: dict[str, Any]) -> dict[str, Any] | None:
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
        await self.write(obj, {"phase": "Finalized", "amountDue": due}, [integration_condition])
        after = integration_spec.payment_links.after_completion
        params = build_payment_link_params(obj.namespace, obj.name, obj.uid, spec, after)
        try:
            created = (await entry.call(lambda c: c.v1.payment_links.create_async(
                params=params, options={"idempotency_key": payment_link_idempotency_key(obj.uid)}
            ))).to_dict()
        except stripe.IdempotencyError:
            # An earlier attempt created the link with other parameters (the integration's after-completion
            # settings changed in between): adopt that link rather than fail or create a second one.
            created = await self.find_link(entry, obj.uid)
            if created is None:
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
            await self.write(obj, {"phase": "Failed"}, [
                _ready("False", "StripeRejected", message),
                cond.Condition("PaymentLinkCreated", "False", "StripeRejected", message)])
            result.events.append(("Warning", "StripeRejected", message))
            return None
        link = {"id": created["id"], "url": created["url"], "active": bool(created.get("active", True)),
                "createdAt": cond.timestamp()}
        await self.write(obj, {"phase": "Open", "paymentLink": link}, [
            _ready("True", "AwaitingPayment", f"Payment link sent; awaiting payment of {due['display']}."),
            cond.Condition("PaymentLinkCreated", "True", "Created", f"Payment link {link['id']}: {link['url']}"),
        ])
        result.events.append(("Normal", "PaymentLinkCreated", f"Payment link {link['id']} for {due['display']}."))
        return link

    async def find_link(self, entry: IntegrationClient, uid: str, scan: int = 300) -> dict[str, Any] | None:
        """The invoice's link among the account's newest ones (Stripe has no search by metadata)."""
        params: dict[str, Any] = {"limit": 100}
        seen = 0
        while seen < scan:
            page = await entry.call(lambda c: c.v1.payment_links.list_async(params=dict(params)))
            for link in page.data:
                data = link.to_dict()
                if (data.get("metadata") or {}).get("invoice_uid") == uid:
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
                                      link_url=link["url"], from_address=smtp.from_address)
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

    async def deactivate_link(self, obj: InvoiceObject, spec: models.InvoiceSpec | None) -> str | None:
        """Deactivate the invoice's link in Stripe; returns a problem to report, or None when done."""
        link = obj.status.get("paymentLink") or {}
        if not link or link.get("active") is False:
            return None
        integration = (spec.integration_ref.name if spec else
                       (obj.body.get("spec") or {}).get("integrationRef", {}).get("name"))
        entry = self.clients.get(obj.namespace, integration) if integration else None
        if entry is None:
            return f'StripeIntegration "{integration}" is not connected, so link {link["id"]} cannot be deactivated yet'
        try:
            await entry.call(lambda c: c.v1.payment_links.update_async(link["id"], params={"active": False}))
        except stripe.StripeError as exc:
            if is_retryable(exc):
                return f"Stripe is unavailable ({type(exc).__name__})"
            if not is_not_found(exc):
                return f"Stripe refused to deactivate link {link['id']}: {user_message(exc)}"
        return None

    async def deactivate_if_needed(self, obj: InvoiceObject, spec: models.InvoiceSpec | None, why: str) -> Result:
        result = Result()
        link = obj.status.get("paymentLink") or {}
        if not link or link.get("active") is False:
            return result
        problem = await self.deactivate_link(obj, spec)
        if problem:
            result.retry_after, result.retry_message = self.config.retry_delay, problem
            return result
        await self.write(obj, {"paymentLink": {**link, "active": False}}, [])
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
        await self.write(obj, {"phase": "Void", "amountDue": due}, [
            _ready("True", "Void", "The invoice is void; its payment link no longer accepts payments.")])
        return result

    # --- missed webhooks ----------------------------------------------------------------------------

    async def find_missed_payment(self, obj: InvoiceObject) -> Decision | None:
        """Ask Stripe for completed Checkout Sessions of the link; record a payment the webhook never brought."""
        link = obj.status.get("paymentLink") or {}
        integration = (obj.body.get("spec") or {}).get("integrationRef", {}).get("name")
        entry = self.clients.get(obj.namespace, integration) if integration else None
        if not link or entry is None:
            return None
        sessions = await entry.call(lambda c: c.v1.checkout.sessions.list_async(
            params={"payment_link": link["id"], "status": "complete", "limit": 10}))
        decision: Decision | None = None
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
                break
        return decision


def jitter_delay(interval: float, seed: str) -> float:
    """A stable spread of first runs over the interval, so timers of many invoices do not fire together."""
    return (int.from_bytes(seed.encode()[-4:].ljust(4, b"\0"), "big") % 1000) / 1000 * interval
