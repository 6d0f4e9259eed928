"""Emailing the customer each payment link, once: a recorded ``sentAt`` is never sent again."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiosmtplib

from fluxrate import conditions as cond
from fluxrate import models
from fluxrate.decision import Decision, Event, backoff
from fluxrate.operator.email import build_invoice_email, send_email
from fluxrate.operator.invoices.status import InvoiceObject, StatusWriter


class Notification(StatusWriter):
    async def notify(self, obj: InvoiceObject, spec: models.InvoiceSpec, link: Mapping[str, Any],
                     result: Decision) -> None:
        seen = ((obj.latest or obj.body).get("status") or {}).get("notification") or {}
        if seen.get("linkId") == link["id"] and seen.get("sentAt"):
            return  # a record of the send is never removed: even an old body that shows it is right
        # A fresh version decides whether to send, and makes the write that records the send conflict-free, so
        # the window between the SMTP server's acceptance and that record (a crash there resends) stays minimal:
        # the answer of this reconcile's own write when there was one (the link just recorded), else a read.
        if obj.fresh and obj.latest is not None:
            latest = obj.latest
        else:
            latest = await self.kube.get_object("invoices", obj.namespace, obj.name) or obj.body
            obj.latest, obj.fresh = latest, True
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
            result.retry_after = backoff(self.config.retry_delay, attempts, doublings=6)
            result.retry_message = text
            return
        sent = f"Emailed the payment link to {spec.customer.email}."
        await self.write(obj, {"notification": {
            "linkId": link["id"], "sentAt": cond.timestamp(), "messageId": message["Message-ID"], "attempts": attempts,
        }}, [cond.Condition("CustomerNotified", "True", "EmailSent", sent)])
        result.events[:] = with_notified(result.events, link["id"], sent)


def with_notified(events: list[Event], link_id: str, sent: str) -> list[Event]:
    """The events with the email's: one Event for a link created and emailed in the same run (the
    ``PaymentLinkCreated`` one says both: an Event is a request to the API server), else ``CustomerNotified``."""
    if events and events[-1].reason == "PaymentLinkCreated" \
            and events[-1].message.startswith(f"Payment link {link_id} "):
        return [*events[:-1], Event("Normal", "PaymentLinkCreated", f"{events[-1].message} {sent}")]
    return [*events, Event("Normal", "CustomerNotified", sent)]
