"""Reconciling an Invoice: one Payment Link when finalized, one email per link, deactivation when it must
not be paid again, and a poll of Stripe for payments whose webhook was missed.

The parts are in the modules beside this one; ``Reconciler`` puts them together and returns ``Decision``s.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from fluxrate import conditions as cond
from fluxrate import models
from fluxrate.decision import Decision
from fluxrate.invoice_status import is_paid
from fluxrate.models import integration_ref_name
from fluxrate.operator.invoices.links import link_history
from fluxrate.operator.invoices.receipts import Receipts
from fluxrate.operator.invoices.renewal import LinkRenewal
from fluxrate.operator.invoices.status import InvoiceObject, ready
from fluxrate.payments import apply_report, report_from_object


class Reconciler(LinkRenewal, Receipts):
    # --- the main reconcile ---------------------------------------------------------------------------

    async def reconcile(self, obj: InvoiceObject) -> Decision:
        result = Decision()
        try:
            spec = models.InvoiceSpec.model_validate(dict(obj.body.get("spec") or {}))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            phase = "Failed" if (obj.body.get("spec") or {}).get("state") == "Finalized" else "Draft"
            await self.write(obj, {"phase": phase}, [ready("False", "InvalidSpec", f"Fix the invoice: {problems}")])
            return result
        due = models.amount_due(spec).to_k8s()
        phase = obj.status.get("phase")

        if spec.state == "Draft":
            await self.write(obj, {"phase": "Draft", "amountDue": due}, [ready(
                "False", "Draft", "The invoice is a draft: set spec.state to Finalized to send the payment link.")])
            return result
        if spec.state == "Void":
            return await self.void(obj, spec, due)
        # Finalized
        if is_paid(phase):
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

    async def void(self, obj: InvoiceObject, spec: models.InvoiceSpec, due: dict[str, Any]) -> Decision:
        if is_paid(obj.status.get("phase")):
            await self.write(obj, {}, [cond.Condition(
                "VoidRefused", "True", "AlreadyPaid",
                "The invoice was paid before it was voided; it stays Paid. Refund the payment in Stripe if needed.")])
            return await self.deactivate_if_needed(obj, spec, "the invoice is paid")
        result = await self.deactivate_if_needed(obj, spec, "the invoice was voided")
        if result.retry_after is not None:
            return result
        void = [ready("True", "Void", "The invoice is void; its payment link no longer accepts payments.")]
        if cond.is_true(((obj.latest or obj.body).get("status") or {}).get("conditions"), "Overdue"):
            void.append(cond.Condition("Overdue", "False", "Void", "The invoice is Void: no longer overdue."))
        await self.write(obj, {"phase": "Void", "amountDue": due, "linkRequest": None}, void)
        return result

    # --- missed webhooks ----------------------------------------------------------------------------

    async def find_missed_payment(self, obj: InvoiceObject) -> Decision | None:
        """Ask Stripe for completed Checkout Sessions of the invoice's links (any of them, newest first); record a
        payment the webhook never brought."""
        links = list(reversed(link_history(obj.status)))
        integration = integration_ref_name(obj.body.get("spec")) or None
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
