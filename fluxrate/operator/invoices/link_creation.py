"""Creating an invoice's payment link: once, when it is finalized, and again for a renewal (``obtain_link``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import stripe

from fluxrate import conditions as cond
from fluxrate import models
from fluxrate.decision import Decision, Event
from fluxrate.operator.invoices.status import InvoiceObject, StatusWriter, ready
from fluxrate.operator.payment_links import build_payment_link_params, payment_link_idempotency_key
from fluxrate.operator.stripe_budget import Priority
from fluxrate.operator.stripe_clients import IntegrationClient
from fluxrate.stripe_errors import is_retryable, user_message


class LinkCreation(StatusWriter):
    async def integration_client(
        self, obj: InvoiceObject, spec: models.InvoiceSpec
    ) -> tuple[IntegrationClient | None, cond.Condition, models.StripeIntegrationSpec | None]:
        """The connected client, from the in-memory registry the integration handler fills before it pokes us,
        with the integration's spec as that handler last saw it; the StripeIntegration is read only to say why
        the invoice cannot proceed."""
        name = spec.integration_ref.name
        entry = self.clients.get(obj.namespace, name)
        if entry is not None and entry.ready and entry.spec is not None and entry.spec.active:
            return entry, cond.Condition("IntegrationReady", "True", "IntegrationReady",
                                         f'StripeIntegration "{name}" is Ready.'), entry.spec
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
        if entry is None or not entry.ready:
            ready = cond.get((integration.get("status") or {}).get("conditions"), cond.READY)
            detail = f"{ready['reason']}: {ready['message']}" if ready and ready["status"] != "True" else "connecting"
            return None, cond.Condition("IntegrationReady", "False", "IntegrationNotReady",
                                        f'StripeIntegration "{name}" is not Ready ({detail}); the invoice proceeds '
                                        "when it is."), integration_spec
        return entry, cond.Condition("IntegrationReady", "True", "IntegrationReady",
                                     f'StripeIntegration "{name}" is Ready.'), integration_spec

    async def create_link(
        self, obj: InvoiceObject, spec: models.InvoiceSpec, due: dict[str, Any], result: Decision
    ) -> dict[str, Any] | None:
        """The invoice's first link: created once, recorded, the invoice Open; the link already recorded when an
        earlier run got that far. None when it cannot be created now (the condition says why)."""
        entry, integration_condition, integration_spec = await self.integration_client(obj, spec)
        usable = entry is not None and integration_spec is not None
        resuming = False

        def marker(status: Mapping[str, Any]) -> Mapping[str, Any] | None:
            # kopf may hand a handler an older body than the last one it processed (its own annotation patch not
            # yet seen on the watch after consistency_timeout, as under a burst of a thousand invoices): the
            # write is guarded by the body's resourceVersion, so such a body costs a conflict and a read, and a
            # link found there is never created again (nor the idempotent replay spending the Stripe budget).
            nonlocal resuming
            if status.get("paymentLink"):
                return None
            if not usable:
                return {"phase": "Finalized", "amountDue": due}
            # Recorded before the request: a run that finds it (the previous one died, or its status write
            # failed, after Stripe created the link) looks for the link before creating one, which still holds
            # when the Idempotency-Key has expired (Stripe keeps keys for 24 hours).
            request = status.get("linkRequest") or {}
            resuming = request.get("attempt") == 1
            return {"phase": "Finalized", "amountDue": due, "linkRequest": {
                "attempt": 1, "reason": "Finalized",
                "requestedAt": request.get("requestedAt") if resuming else cond.timestamp()}}

        conditions = [integration_condition] if usable else [
            ready("False", integration_condition.reason, integration_condition.message), integration_condition]
        latest = await self.write(obj, marker, conditions)
        existing = (latest.get("status") or {}).get("paymentLink")
        if existing:
            return dict(existing)
        if entry is None or integration_spec is None:
            return None
        created = await self.obtain_link(obj, entry, spec, integration_spec, 1, (), resuming, result)
        if created is None:
            return None
        link = {"id": created["id"], "url": created["url"], "active": bool(created.get("active", True)),
                "createdAt": cond.timestamp(), "attempt": 1, "reason": "Finalized"}
        await self.write(obj, {"phase": "Open", "paymentLink": link, "paymentLinks": [link], "linkRequest": None}, [
            ready("True", "AwaitingPayment", f"Payment link sent; awaiting payment of {due['display']}."),
            cond.Condition("PaymentLinkCreated", "True", "Created", f"Payment link {link['id']}: {link['url']}"),
        ])
        result.events.append(Event("Normal", "PaymentLinkCreated", f"Payment link {link['id']} for {due['display']}."))
        return link

    async def obtain_link(
        self, obj: InvoiceObject, entry: IntegrationClient, spec: models.InvoiceSpec,
        integration_spec: models.StripeIntegrationSpec, attempt: int, known: tuple[str, ...] | list[str],
        resuming: bool, result: Decision,
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
                    params=params, options={"idempotency_key": key}), priority=Priority.LINKS)).to_dict()
            except stripe.IdempotencyError:
                found = await self.find_link(entry, obj.uid, exclude=known)
                if found is not None:
                    return found
                message = "Stripe reports an earlier attempt for this invoice but its link was not found; retrying."
                await self.write(obj, {}, [ready("Unknown", "LinkLookupPending", message)])
                result.retry_after, result.retry_message = self.config.retry_delay, message
                return None
        except stripe.StripeError as exc:
            if is_retryable(exc):
                message = f"Stripe is unavailable ({type(exc).__name__}); retrying with backoff."
                await self.write(obj, {}, [ready("Unknown", "StripeUnavailable", message)])
                result.retry_after, result.retry_message = self.config.retry_delay, message
                return None
            message = f"Stripe refused the payment link: {user_message(exc)}"
            failed = cond.Condition("PaymentLinkCreated", "False", "StripeRejected", message)
            if attempt == 1:
                await self.write(obj, {"phase": "Failed", "linkRequest": None},
                                 [ready("False", "StripeRejected", message), failed])
            else:  # an Open invoice stays Open (phases only move forward); the next reconciliation tries again
                await self.write(obj, {"linkRequest": None}, [failed])
            result.events.append(Event("Warning", "StripeRejected", message))
            return None

    async def find_link(self, entry: IntegrationClient, uid: str, exclude: tuple[str, ...] | list[str] = (),
                        scan: int = 1000) -> dict[str, Any] | None:
        """The invoice's newest link that is not one of ``exclude`` (those already recorded), among the account's
        newest ``scan`` links: Stripe has no search of payment links by metadata."""
        params: dict[str, Any] = {"limit": 100}
        seen = 0
        while seen < scan:
            page = await entry.call(lambda c: c.v1.payment_links.list_async(params=dict(params)),
                                    priority=Priority.LINKS)
            for link in page.data:
                data = link.to_dict()
                if (data.get("metadata") or {}).get("invoice_uid") == uid and data.get("id") not in exclude:
                    return data
            seen += len(page.data)
            if not page.has_more or not page.data:
                break
            params["starting_after"] = page.data[-1].id
        return None
