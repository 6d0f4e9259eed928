"""Stopping an invoice's links from being paid again (paid, voided, replaced or deleted)."""

from __future__ import annotations

from typing import Any

import stripe

from fluxrate import models
from fluxrate.decision import Decision, Event
from fluxrate.models import integration_ref_name
from fluxrate.operator.invoices.links import active_links, with_links_inactive
from fluxrate.operator.invoices.status import InvoiceObject, StatusWriter
from fluxrate.operator.stripe_budget import Priority
from fluxrate.stripe_errors import is_not_found, is_retryable, user_message


class Deactivation(StatusWriter):
    def _entry_for(self, obj: InvoiceObject, spec: models.InvoiceSpec | None) -> tuple[str | None, Any]:
        integration = spec.integration_ref.name if spec else (integration_ref_name(obj.body.get("spec")) or None)
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
                await entry.call(lambda c, i=link["id"]: c.v1.payment_links.update_async(i, params={"active": False}),
                                 priority=Priority.LINKS)
            except stripe.StripeError as exc:
                if is_retryable(exc):
                    return f"Stripe is unavailable ({type(exc).__name__})"
                if not is_not_found(exc):
                    return f"Stripe refused to deactivate link {link['id']}: {user_message(exc)}"
        return None

    async def deactivate_if_needed(self, obj: InvoiceObject, spec: models.InvoiceSpec | None, why: str,
                                   *, replaced_only: bool = False) -> Decision:
        """Deactivate the invoice's active links (``replaced_only``: all but the current one) and record it."""
        result = Decision()
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
            result.events.append(Event("Normal", "PaymentLinkDeactivated", f"Deactivated link {link['id']}: {why}."))
        return result
