"""Due dates and reminders as pure rules: the steps, which one is due, which are skipped and why, the Overdue
condition, and the next moment anything changes (what the operator's schedule wakes for)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from fluxrate.lifecycle_models import Reminders
from fluxrate.models import InvoiceSpec
from fluxrate.operator.email import build_reminder_email
from fluxrate.operator.invoices.dunning import Policy, due_of, plan, policy_of, steps, wake_at
from fluxrate.operator.invoices.reminding import with_records

UTC = dt.UTC
DUE = dt.datetime(2026, 12, 1, tzinfo=UTC)  # dueDate 2026-11-30: due at the end of that day
SENT = "2026-11-01T09:00:00Z"  # the invoice email
DEFAULT = Policy()  # before 3 days; after 1, 7, 14 days


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def invoice(phase: str = "Open", due: Any = "2026-11-30", sent: str | None = SENT, records: list[Any] | None = None,
            overdue: str | None = None, **spec: Any) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase, "paymentLink": {"id": "plink_1", "url": "https://pay/1", "active": True},
                              "reminders": records or [], "conditions": []}
    if sent:
        status["notification"] = {"linkId": "plink_1", "sentAt": sent}
    if overdue:
        status["conditions"].append({"type": "Overdue", "status": overdue, "reason": "PastDue", "message": ""})
    return {"metadata": {"namespace": "ns", "name": "inv-1", "uid": "u-1"},
            "spec": {"state": "Finalized", "dueDate": due, "integrationRef": {"name": "prod"}, **spec},
            "status": status}


def sent(step: str, due_at: str) -> dict[str, Any]:
    return {"step": step, "dueAt": due_at, "sentAt": due_at, "messageId": f"<reminder.{step}.u-1@fluxrate.invoice>"}


@pytest.mark.parametrize(("due", "moment"), [
    ("2026-11-30", DUE),  # a date: the end of that day, UTC
    ("2026-12-01T17:00:00Z", at("2026-12-01T17:00:00Z")),
    ("2026-12-01T17:00:00+02:00", at("2026-12-01T15:00:00Z")),
    (None, None),
    ("tomorrow", None),
])
def test_the_due_moment_of_a_date_or_a_time(due: Any, moment: dt.datetime | None) -> None:
    assert due_of({"dueDate": due}) == moment


def test_steps_before_and_after_the_due_moment_in_time_order() -> None:
    found = steps(DUE, Reminders(days_before_due=[1, 3], days_after_due=[7, 0, 1]))
    assert [(s.name, s.at) for s in found] == [
        ("before-3d", at("2026-11-28T00:00:00Z")), ("before-1d", at("2026-11-30T00:00:00Z")),
        ("after-0d", DUE), ("after-1d", at("2026-12-02T00:00:00Z")), ("after-7d", at("2026-12-08T00:00:00Z"))]
    assert steps(DUE, Reminders(enabled=False)) == []


def test_nothing_is_due_before_the_first_step_and_the_schedule_wakes_for_it() -> None:
    result = plan(invoice(), DEFAULT, at("2026-11-20T00:00:00Z"))
    assert not result.acts and not result.is_overdue
    assert result.next_at == at("2026-11-28T00:00:00Z")
    assert wake_at(invoice(), DEFAULT, at("2026-11-20T00:00:00Z")) == at("2026-11-28T00:00:00Z").timestamp()


def test_the_step_whose_time_came_is_sent_then_the_next_one_is_awaited() -> None:
    result = plan(invoice(), DEFAULT, at("2026-11-28T00:00:01Z"))
    assert result.send is not None and result.send.name == "before-3d" and result.skipped == []
    assert result.overdue is None and result.next_at == DUE  # the overdue moment comes first
    recorded = invoice(records=[sent("before-3d", "2026-11-28T00:00:00Z")])
    assert not plan(recorded, DEFAULT, at("2026-11-29T00:00:00Z")).acts  # a recorded step is never sent again


def test_at_the_due_moment_the_invoice_becomes_overdue_and_says_so() -> None:
    recorded = invoice(records=[sent("before-3d", "2026-11-28T00:00:00Z")])
    result = plan(recorded, DEFAULT, DUE)
    assert result.is_overdue and result.send is None
    assert result.overdue is not None and (result.overdue.status, result.overdue.reason) == ("True", "PastDue")
    assert result.overdue.message == "Due 2026-11-30; 0 days overdue; next reminder after-1d on 2026-12-02 00:00 UTC."
    assert result.next_at == at("2026-12-02T00:00:00Z")
    # once True it is not rewritten each day: only with the next reminder
    assert not plan(invoice(records=recorded["status"]["reminders"], overdue="True"), DEFAULT,
                    at("2026-12-01T12:00:00Z")).acts


def test_when_several_steps_are_due_only_the_latest_is_sent_the_rest_superseded() -> None:
    result = plan(invoice(overdue="True"), DEFAULT, at("2026-12-09T00:00:00Z"))  # operator down for two weeks
    assert result.send is not None and result.send.name == "after-7d"
    assert [(s.name, why) for s, why in result.skipped] == [("before-3d", "Superseded"), ("after-1d", "Superseded")]
    assert result.overdue is not None and "8 days overdue; next reminder after-14d" in result.overdue.message
    assert result.next_at == at("2026-12-15T00:00:00Z")


def test_steps_whose_time_came_before_the_invoice_email_are_skipped() -> None:
    late = invoice(sent="2026-11-29T10:00:00Z")  # finalized after before-3d's time
    result = plan(late, DEFAULT, at("2026-11-29T10:00:05Z"))
    assert result.send is None and [(s.name, why) for s, why in result.skipped] == [("before-3d", "BeforeInvoiceEmail")]
    assert result.next_at == DUE


def test_no_reminder_before_the_first_email_was_sent() -> None:
    result = plan(invoice(sent=None), DEFAULT, at("2026-11-28T00:00:01Z"))
    assert result.send is None and result.skipped == [] and "not been sent" in result.note
    assert result.next_at == DUE  # the email's own status write brings the reminders back


def test_an_invoice_schedule_replaces_the_integrations_and_can_turn_reminders_off() -> None:
    own = invoice(reminders={"daysBeforeDue": [10], "daysAfterDue": []})
    result = plan(own, DEFAULT, at("2026-11-21T00:00:01Z"))
    assert result.send is not None and result.send.name == "before-10d"
    done = invoice(reminders=own["spec"]["reminders"], records=[sent("before-10d", "2026-11-21T00:00:00Z")])
    assert plan(done, DEFAULT, at("2026-11-29T00:00:00Z")).send is None  # no before-3d: replaced, not merged
    off = invoice(reminders={"enabled": False})
    result = plan(off, DEFAULT, at("2026-12-03T00:00:00Z"))
    assert result.send is None and result.skipped == [] and "turned off" in result.note
    assert result.overdue is not None and result.overdue.status == "True"  # still overdue: a fact, not a reminder
    assert "no reminders: reminders are turned off (the invoice's spec.reminders.enabled: false)" in \
        result.overdue.message


def test_a_disabled_integration_or_schedule_sends_none() -> None:
    for policy in (Policy(active=False), policy_of({"reminders": {"enabled": False}}), policy_of({"active": False})):
        result = plan(invoice(), policy, at("2026-11-28T00:00:01Z"))
        assert result.send is None and result.skipped == [] and result.next_at == DUE
    assert policy_of({}) == Policy() and policy_of({"reminders": {"daysAfterDue": [2]}}).reminders.days_after_due == [2]


@pytest.mark.parametrize(("phase", "reason"), [("Paid", "Paid"), ("Refunded", "Paid"), ("Void", "Void")])
def test_paid_refunded_and_void_stop_everything_and_end_overdue(phase: str, reason: str) -> None:
    result = plan(invoice(phase, overdue="True"), DEFAULT, at("2026-12-09T00:00:00Z"))
    assert result.send is None and result.skipped == [] and result.next_at is None
    assert result.overdue is not None and (result.overdue.status, result.overdue.reason) == ("False", reason)
    assert not plan(invoice(phase), DEFAULT, at("2026-12-09T00:00:00Z")).acts  # False only once it was True
    assert wake_at(invoice(phase), DEFAULT, at("2026-12-09T00:00:00Z")) is None


def test_drafts_get_no_reminder_and_are_never_overdue() -> None:
    draft = invoice("Draft", state="Draft")
    assert not plan(draft, DEFAULT, at("2026-12-09T00:00:00Z")).acts
    assert wake_at(draft, DEFAULT, at("2026-12-09T00:00:00Z")) is None


@pytest.mark.parametrize("phase", ["Finalized", "Failed"])
def test_an_issued_invoice_without_a_link_is_overdue_but_not_reminded(phase: str) -> None:
    result = plan(invoice(phase), DEFAULT, at("2026-12-09T00:00:00Z"))
    assert result.send is None and result.overdue is not None and result.overdue.status == "True"
    assert plan(invoice(phase), DEFAULT, at("2026-11-29T00:00:00Z")).next_at == DUE


def test_a_due_date_moved_later_ends_overdue_and_one_removed_too() -> None:
    moved = plan(invoice(due="2026-12-31", overdue="True"), DEFAULT, at("2026-12-09T00:00:00Z"))
    assert moved.overdue is not None and (moved.overdue.status, moved.overdue.reason) == ("False", "NotDue")
    gone = plan(invoice(due=None, overdue="True"), DEFAULT, at("2026-12-09T00:00:00Z"))
    assert gone.overdue is not None and gone.overdue.status == "False"


def test_a_time_due_date_counts_from_that_moment() -> None:
    timed = invoice(due="2026-12-01T17:00:00+02:00", reminders={"daysAfterDue": [0]})
    assert not plan(timed, DEFAULT, at("2026-12-01T14:59:59Z")).is_overdue
    result = plan(timed, DEFAULT, at("2026-12-01T15:00:00Z"))
    assert result.is_overdue and result.send is not None and result.send.name == "after-0d"
    assert result.due_label == "2026-12-01 15:00 UTC"


def test_unknown_policy_decides_only_overdue() -> None:
    result = plan(invoice(), None, at("2026-12-02T00:00:01Z"))
    assert result.send is None and result.overdue is not None and result.overdue.status == "True"


def test_a_failed_send_is_retried_and_a_step_earlier_than_a_recorded_one_is_never_sent() -> None:
    failed = invoice(records=[{"step": "before-3d", "dueAt": "2026-11-28T00:00:00Z", "attempts": 2}])
    result = plan(failed, DEFAULT, at("2026-11-28T01:00:00Z"))
    assert result.send is not None and result.send.name == "before-3d"
    edited = invoice(records=[sent("after-1d", "2026-12-02T00:00:00Z")], overdue="True",
                     reminders={"daysBeforeDue": [], "daysAfterDue": [0, 1]})
    result = plan(edited, DEFAULT, at("2026-12-02T00:00:05Z"))
    assert result.send is None and [(s.name, why) for s, why in result.skipped] == [("after-0d", "Superseded")]


def test_records_merge_by_step_and_a_recorded_send_is_never_rewritten() -> None:
    status = {"reminders": [sent("before-3d", "2026-11-28T00:00:00Z"),
                            {"step": "after-1d", "dueAt": "2026-12-02T00:00:00Z", "attempts": 1}]}
    merged = with_records(status, [{"step": "before-3d", "skipped": "Superseded"},
                                   {"step": "after-1d", "sentAt": "2026-12-02T00:01:00Z", "attempts": 1},
                                   {"step": "after-7d", "skipped": "Superseded"}])
    assert merged[0] == sent("before-3d", "2026-11-28T00:00:00Z")
    assert merged[1]["sentAt"] == "2026-12-02T00:01:00Z" and [r["step"] for r in merged][2] == "after-7d"


def test_the_reminder_email_says_what_is_due_and_links_to_the_payment() -> None:
    spec = InvoiceSpec.model_validate({
        "integrationRef": {"name": "prod"}, "currency": "USD", "customer": {"id": "c", "email": "ap@acme.example",
                                                                              "name": "Acme"},
        "lineItems": [{"description": "Seats", "quantity": 3, "unitAmount": "12.50"}]})
    before = build_reminder_email(name="inv-1", uid="u-1", spec=spec, step="before-3d", link_url="https://pay/1",
                                  from_address="billing@x.example", due="2026-11-30", days_overdue=None)
    assert before["Subject"] == "Reminder: invoice inv-1, 37.50 USD due on 2026-11-30"
    assert before["Message-ID"] == "<reminder.before-3d.u-1@fluxrate.invoice>"
    assert "https://pay/1" in before.get_body(("plain",)).get_content()
    late = build_reminder_email(name="inv-1", uid="u-1", spec=spec, step="after-7d", link_url="https://pay/1",
                                from_address="billing@x.example", due="2026-11-30", days_overdue=8)
    assert late["Subject"] == "Overdue: invoice inv-1, 37.50 USD was due on 2026-11-30"
    assert "8 days overdue" in late.get_body(("plain",)).get_content()
