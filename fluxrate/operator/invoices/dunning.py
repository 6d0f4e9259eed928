"""Due dates and reminders (pure): from an invoice, its integration's reminder schedule and the time, which
reminder step is due, which are skipped, whether the invoice is Overdue, and when any of that next changes.

The rules (docs/user-guide.md, "Due dates and reminders"):

- A schedule ``Reminders`` has steps ``before-{n}d`` (the due moment minus n days) and ``after-{n}d`` (plus n
  days; ``after-0d`` is the due moment itself). An Invoice's own ``spec.reminders`` replaces its integration's;
  ``enabled: false`` turns reminders off.
- Reminders go only to an Open invoice whose first email was sent (``status.notification.sentAt``) and whose
  current link is active, of an active integration (``spec.active``). A recorded step (sent, or skipped) is never
  sent again.
- Of the steps whose time has come, only the latest is sent; the earlier ones are recorded skipped "Superseded",
  and those whose time came before the invoice's email was sent "BeforeInvoiceEmail". A step no later than a step
  already recorded is superseded too (a schedule edited after reminders went out).
- Overdue: an issued invoice (Finalized, Open or Failed) past its due moment is ``Overdue`` True/PastDue. When it
  stops being overdue after it was: False/Paid, False/Void, or False/NotDue (its due date moved or was removed).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter, ValidationError

from fluxrate import conditions as cond
from fluxrate.due_dates import DueDate, due_moment, due_text
from fluxrate.invoice_status import is_paid
from fluxrate.lifecycle_models import Reminders
from fluxrate.models import MAX_REMINDERS

OVERDUE = "Overdue"
OVERDUE_PHASES = frozenset({"Finalized", "Open", "Failed"})  # issued and not paid or void
SUPERSEDED = "Superseded"
BEFORE_INVOICE_EMAIL = "BeforeInvoiceEmail"
_DUE_DATE: TypeAdapter[Any] = TypeAdapter(DueDate)


@dataclass(frozen=True)
class Policy:
    """The integration's part of the decision: its reminder schedule, and whether it is active."""

    active: bool = True
    reminders: Reminders = field(default_factory=Reminders)


def policy_of(spec: Mapping[str, Any] | None) -> Policy:
    """The policy of a StripeIntegration ``spec`` (raw); a schedule the CRD should have refused means none."""
    spec = spec or {}
    try:
        reminders = Reminders.model_validate(dict(spec.get("reminders") or {}))
    except ValidationError:
        reminders = Reminders(enabled=False)
    return Policy(active=spec.get("active", True) is not False, reminders=reminders)


@dataclass(frozen=True)
class Step:
    name: str  # before-3d, after-0d, after-7d
    at: dt.datetime


def steps(due: dt.datetime, reminders: Reminders) -> list[Step]:
    """The schedule's steps around ``due``, in time order."""
    if not reminders.enabled:
        return []
    found = {f"before-{n}d": due - dt.timedelta(days=n) for n in reminders.days_before_due}
    found.update({f"after-{n}d": due + dt.timedelta(days=n) for n in reminders.days_after_due})
    return sorted((Step(name, at) for name, at in found.items()), key=lambda step: (step.at, step.name))


def due_of(spec: Mapping[str, Any]) -> dt.datetime | None:
    """``due_dates.due_moment`` of a raw invoice spec (without validating the rest of it); None when it has none."""
    raw = spec.get("dueDate")
    if raw is None:
        return None
    try:
        parsed = _DUE_DATE.validate_python(raw)
    except ValidationError:
        return None
    return due_moment(parsed)


def due_label(spec: Mapping[str, Any], due: dt.datetime) -> str:
    """The due date as the customer and the user read it: the date given, or the moment in UTC."""
    raw = spec.get("dueDate")
    if isinstance(raw, str) and len(raw) == 10:
        return raw
    if isinstance(raw, dt.date) and not isinstance(raw, dt.datetime):
        return due_text(raw)
    return due_text(due)


def parse_time(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def reminders_for(spec: Mapping[str, Any], policy: Policy) -> tuple[Reminders | None, str]:
    """The schedule that applies to an invoice, or None and why there is none."""
    if not policy.active:
        return None, "its StripeIntegration is disabled (spec.active: false)"
    own = spec.get("reminders")
    if own is None:
        reminders, source = policy.reminders, "the StripeIntegration's spec.reminders"
    else:
        try:
            reminders, source = Reminders.model_validate(dict(own)), "the invoice's spec.reminders"
        except ValidationError:
            return None, "the invoice's spec.reminders is invalid"
    if not reminders.enabled:
        return None, f"reminders are turned off ({source}.enabled: false)"
    if not reminders.days_before_due and not reminders.days_after_due:
        return None, f"{source} has no steps"
    return reminders, ""


@dataclass
class Plan:
    """What is due for an invoice at ``now``."""

    due: dt.datetime | None = None
    due_label: str = ""
    is_overdue: bool = False
    send: Step | None = None  # the step to email now
    skipped: list[tuple[Step, str]] = field(default_factory=list)  # steps to record as skipped, with why
    overdue: cond.Condition | None = None  # the Overdue condition to write (a change), None: leave it
    next_step: Step | None = None  # the next step in the future
    next_at: dt.datetime | None = None  # when the plan next changes by itself (None: only an edit changes it)
    note: str = ""  # why no reminders are sent, when none are

    @property
    def acts(self) -> bool:
        return bool(self.send or self.skipped or self.overdue)


def plan(body: Mapping[str, Any], policy: Policy | None, now: dt.datetime) -> Plan:
    """What is due for the invoice ``body`` at ``now``; ``policy`` None: its integration's is not known (yet),
    so only the Overdue condition is decided."""
    spec, status = body.get("spec") or {}, body.get("status") or {}
    phase = status.get("phase")
    was_overdue = cond.is_true(status.get("conditions"), OVERDUE)
    if is_paid(phase) or phase == "Void":
        reason = "Paid" if is_paid(phase) else "Void"
        stopped = cond.Condition(OVERDUE, "False", reason, f"The invoice is {phase}: no longer overdue.")
        return Plan(overdue=stopped if was_overdue else None)
    if spec.get("state") == "Void":
        return Plan()  # being voided: the reconciler finishes it
    due = due_of(spec)
    if due is None or phase not in OVERDUE_PHASES or spec.get("state") != "Finalized":
        gone = cond.Condition(OVERDUE, "False", "NotDue", "The invoice has no due date any more.")
        return Plan(overdue=gone if was_overdue and due is None else None)
    result = Plan(due=due, due_label=due_label(spec, due), is_overdue=now >= due)
    if phase == "Open" and policy is not None:
        _plan_reminders(result, spec, status, policy, now)
    elif phase != "Open":
        result.note = f"the invoice is {phase}, without a payment link to remind of"
    if not result.is_overdue:
        result.next_at = due if result.next_at is None else min(result.next_at, due)
    result.overdue = _overdue_condition(result, was_overdue, now)
    return result


def _plan_reminders(result: Plan, spec: Mapping[str, Any], status: Mapping[str, Any], policy: Policy,
                    now: dt.datetime) -> None:
    assert result.due is not None
    reminders, result.note = reminders_for(spec, policy)
    if reminders is None:
        return
    link = status.get("paymentLink") or {}
    sent_at = parse_time((status.get("notification") or {}).get("sentAt"))
    if sent_at is None or not link.get("url") or link.get("active") is False:
        # the invoice email (or a renewed link's) is not out yet: its status write brings the next change
        result.note = "the invoice's email has not been sent yet" if sent_at is None else \
            "its payment link is being replaced"
        return
    records = [r for r in status.get("reminders") or [] if isinstance(r, Mapping)]
    done = {r.get("step") for r in records if r.get("sentAt") or r.get("skipped")}
    done_times = [t for t in (parse_time(r.get("dueAt")) for r in records if r.get("step") in done) if t]
    latest_done = max(done_times, default=None)
    todo = [step for step in steps(result.due, reminders) if step.name not in done]
    future = [step for step in todo if step.at > now]
    past = [step for step in todo if step.at <= now]
    sendable = [s for s in past if s.at >= sent_at and (latest_done is None or s.at > latest_done)]
    result.send = sendable[-1] if sendable else None
    names = {r.get("step") for r in records}
    room = MAX_REMINDERS - len(names)  # the records fit status.reminders: a schedule edited often stops there
    if result.send is not None and result.send.name not in names:
        if room < 1:
            result.send, result.note = None, f"status.reminders holds {MAX_REMINDERS} steps already"
        room -= 1
    kept: list[tuple[Step, str]] = []
    for step in reversed([s for s in past if s is not result.send]):
        if step.name in names or room > 0:
            kept.insert(0, (step, BEFORE_INVOICE_EMAIL if step.at < sent_at else SUPERSEDED))
            room -= step.name not in names
    result.skipped = kept
    result.next_step = future[0] if future else None
    result.next_at = future[0].at if future else None


def _overdue_condition(result: Plan, was_overdue: bool, now: dt.datetime) -> cond.Condition | None:
    if not result.is_overdue:
        if not was_overdue:
            return None
        return cond.Condition(OVERDUE, "False", "NotDue", f"Due {result.due_label}: not overdue.")
    if was_overdue and not (result.send or result.skipped):
        return None  # rewritten only with a reminder, not every day
    return cond.Condition(OVERDUE, "True", "PastDue", overdue_message(result, now))


def days_overdue(due: dt.datetime, now: dt.datetime) -> int:
    return max((now - due) // dt.timedelta(days=1), 0)


def overdue_message(result: Plan, now: dt.datetime) -> str:
    assert result.due is not None
    days = days_overdue(result.due, now)
    text = f"Due {result.due_label}; {days} day{'s' if days != 1 else ''} overdue"
    if result.next_step is not None:
        return f"{text}; next reminder {result.next_step.name} on {result.next_step.at:%Y-%m-%d %H:%M} UTC."
    if result.note:
        return f"{text}; no reminders: {result.note}."
    return f"{text}; no further reminders scheduled."


def wake_at(body: Mapping[str, Any], policy: Policy | None, now: dt.datetime) -> float | None:
    """When (epoch seconds) the invoice's dunning must next run: now when something is due, the next moment it
    changes, or None when only a change of the invoice (a watch event) can bring one."""
    status = body.get("status") or {}
    phase = status.get("phase")
    if phase not in OVERDUE_PHASES and not cond.is_true(status.get("conditions"), OVERDUE):
        return None  # the common case (Paid, Void, Draft): no parsing
    result = plan(body, policy, now)
    if result.acts:
        return now.timestamp()
    return result.next_at.timestamp() if result.next_at is not None else None
