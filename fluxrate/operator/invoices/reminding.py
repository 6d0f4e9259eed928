"""Doing what ``dunning.plan`` says is due: email the reminder step (at least once: the send is recorded in
``status.reminders`` after the SMTP server accepted it, under a Message-ID stable across retries), record the steps
skipped, and set the Overdue condition."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiosmtplib
from pydantic import ValidationError

from fluxrate import conditions as cond
from fluxrate import models
from fluxrate.decision import Event, backoff
from fluxrate.operator.email import build_reminder_email, send_email
from fluxrate.operator.invoices.dunning import OVERDUE, Plan, Policy, days_overdue, plan
from fluxrate.operator.invoices.status import InvoiceObject, StatusWriter


@dataclass
class Reminded:
    """What a dunning run did: the Events to post on ``body``, when to run next (wall clock), and a backoff."""

    body: Mapping[str, Any]
    events: list[Event] = field(default_factory=list)
    next_at: dt.datetime | None = None
    retry_after: float | None = None  # the SMTP server refused: run again after this many seconds


def with_records(status: Mapping[str, Any], updates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``status.reminders`` with ``updates`` merged by step (a record of a step is updated, never duplicated)."""
    records = [dict(r) for r in status.get("reminders") or [] if isinstance(r, Mapping)]
    for update in updates:
        found = next((r for r in records if r.get("step") == update["step"]), None)
        if found is None:
            records.append(update)
        elif not (found.get("sentAt") or found.get("skipped")):  # a recorded send or skip is never rewritten
            found.update(update)
    return records


class Reminding(StatusWriter):
    async def remind(self, namespace: str, name: str, policy: Policy | None, now: dt.datetime) -> Reminded | None:
        """Run the invoice's dunning at ``now`` (re-read first: it decides whether to send); None when it is gone."""
        latest = await self.kube.get_object("invoices", namespace, name)
        if latest is None:
            return None
        obj = InvoiceObject.of(latest)
        due = plan(latest, policy, now)
        done = Reminded(latest, next_at=due.next_at)
        if not due.acts:
            return done
        records = [{"step": step.name, "dueAt": cond.timestamp(step.at), "skipped": why}
                   for step, why in due.skipped]
        if due.send is not None:
            record, retry = await self._send(obj, due, now)
            records.append(record)
            if retry is not None:
                done.retry_after, done.next_at = retry, now
                done.events.append(Event("Warning", "ReminderNotSent", f"Reminder {due.send.name} to "
                                         f"{(latest['spec'].get('customer') or {}).get('email')} failed "
                                         f"({record.pop('error')}); retrying in {retry:.0f} s."))
        conditions = [due.overdue] if due.overdue is not None else []
        was_overdue = cond.is_true((latest.get("status") or {}).get("conditions"), OVERDUE)
        done.body = await self.write(obj, lambda status: {"reminders": with_records(status, records)} if records
                                     else {}, conditions)
        if due.overdue is not None and due.overdue.status == "True" and not was_overdue:
            done.events.insert(0, Event("Normal", "Overdue", due.overdue.message))
        if due.send is not None and done.retry_after is None:
            done.events.append(Event("Normal", "ReminderSent", f"Emailed reminder {due.send.name} to "
                                     f"{latest['spec']['customer']['email']} (due {due.due_label})."))
        return done

    async def _send(self, obj: InvoiceObject, due: Plan, now: dt.datetime) -> tuple[dict[str, Any], float | None]:
        """Email the step: its record, and a backoff when the SMTP server did not accept it."""
        assert due.send is not None and due.due is not None
        status = obj.status
        record = next((r for r in status.get("reminders") or [] if r.get("step") == due.send.name), {})
        attempts = int(record.get("attempts") or 0)
        base = {"step": due.send.name, "dueAt": cond.timestamp(due.send.at)}
        smtp = self.config.smtp
        try:
            spec = models.InvoiceSpec.model_validate(dict(obj.body.get("spec") or {}))
        except ValidationError:
            return {**base, "skipped": "InvalidSpec"}, None
        if not smtp.configured:
            return {**base, "skipped": "SmtpNotConfigured"}, None
        message = build_reminder_email(
            name=obj.name, uid=obj.uid, spec=spec, step=due.send.name, link_url=status["paymentLink"]["url"],
            from_address=smtp.from_address, due=due.due_label,
            days_overdue=days_overdue(due.due, now) if due.is_overdue else None)
        try:
            await send_email(message, smtp)
        except (aiosmtplib.SMTPException, OSError) as exc:
            code = getattr(exc, "code", None)
            error = f"{type(exc).__name__}{f' {code}' if code else ''}: {getattr(exc, 'message', '') or exc}"[:300]
            retry = backoff(self.config.retry_delay, attempts, doublings=6)
            return {**base, "attempts": attempts + 1, "error": error}, retry
        return {**base, "sentAt": cond.timestamp(now), "messageId": message["Message-ID"], "attempts": attempts}, None
