"""Due dates and reminders with the operator running on the sandbox: the wall clock is a ManualClock moved
forward step by step (never slept through), and what the customer (emails in the SMTP sink) and the user
(status.reminders, the Overdue condition, ``kubectl get inv``) see is asserted."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from fluxrate.operator import clock as clocks
from fluxrate.operator.main import running_operator
from fluxrate.operator.settings import OperatorSettings
from fluxrate.payments import apply_report, report_from_object
from fluxrate_sandbox.clock import ManualClock
from fluxrate_sandbox.kube_server import KubeSandbox
from fluxrate_sandbox.smtp_sink import ReceivedMessage, SmtpSink
from fluxrate_sandbox.stripe_standin import StripeStandin

from ..conftest import GROUP_VERSION, eventually
from .conftest import Cluster
from .test_invoices import INV, SI, connect, invoice_body, wait_phase

TABLE = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}


@pytest.fixture
def clock() -> Iterator[ManualClock]:
    manual = ManualClock()
    previous = clocks.install(manual)
    yield manual
    clocks.install(previous)


@pytest.fixture
def fast(operator_settings: OperatorSettings) -> OperatorSettings:
    return dataclasses.replace(operator_settings, retry_delay=0.3)


def due_in(clock: ManualClock, days: int) -> tuple[str, dt.datetime]:
    """A ``dueDate`` ``days`` from the clock's today, and its due moment (the end of that day, UTC)."""
    day = (clock() + dt.timedelta(days=days)).date()
    return day.isoformat(), dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)


def message_id(mail: ReceivedMessage) -> str:
    return str(mail.message["Message-ID"]).strip()  # a long one is folded onto its own line


def reminders_to(sink: SmtpSink, uid: str) -> list[ReceivedMessage]:
    return [m for m in sink.messages
            if message_id(m).startswith("<reminder.") and message_id(m).endswith(f".{uid}@fluxrate.invoice>")]


async def reminder_steps(cluster: Cluster, namespace: str, name: str) -> dict[str, dict[str, Any]]:
    obj = await cluster.get(INV, namespace, name)
    return {r["step"]: r for r in ((obj or {}).get("status") or {}).get("reminders") or []}


async def wait_step(cluster: Cluster, namespace: str, name: str, step: str, key: str = "sentAt") -> dict[str, Any]:
    steps = await eventually(lambda: reminder_steps(cluster, namespace, name), lambda s: bool(s.get(step, {})
                                                                                                .get(key)))
    return steps[step]


async def get_inv(kube: KubeSandbox, namespace: str) -> dict[str, dict[str, Any]]:
    """``kubectl get inv``: the printer columns of each invoice, by name."""
    async with kube.client() as session, session.get(
            f"/apis/{GROUP_VERSION}/namespaces/{namespace}/invoices", headers=TABLE) as response:
        table = await response.json()
    names = [c["name"] for c in table["columnDefinitions"]]
    return {row["cells"][0]: dict(zip(names, row["cells"], strict=True)) for row in table["rows"]}


async def open_invoice(cluster: Cluster, standin: StripeStandin, namespace: str, name: str, due: str,
                       connected: bool = False, **spec: Any) -> dict[str, Any]:
    if not connected:
        await connect(cluster, standin, namespace)
    await cluster.create(INV, namespace, invoice_body(name, dueDate=due, **spec))
    await cluster.wait_condition(INV, namespace, name, "CustomerNotified", status="True")
    return await wait_phase(cluster, namespace, name, "Open")


async def test_one_reminder_per_step_overdue_at_the_due_moment_and_none_once_paid(
    kube: KubeSandbox, fast: OperatorSettings, clock: ManualClock, cluster: Cluster,
    stripe_standin: StripeStandin, smtp_sink: SmtpSink, namespace: str,
) -> None:
    due_date, due = due_in(clock, 10)
    async with running_operator(fast):
        obj = await open_invoice(cluster, stripe_standin, namespace, "dun-1", due_date)
        uid, url = obj["metadata"]["uid"], obj["status"]["paymentLink"]["url"]
        await asyncio.sleep(0.5)
        assert reminders_to(smtp_sink, uid) == [] and len(smtp_sink.messages) == 1  # only the invoice email

        clock.move_to(due - dt.timedelta(days=3, seconds=-60))
        before = await wait_step(cluster, namespace, "dun-1", "before-3d")
        (mail,) = reminders_to(smtp_sink, uid)
        assert message_id(mail) == before["messageId"] == f"<reminder.before-3d.{uid}@fluxrate.invoice>"
        assert mail.subject == f"Reminder: invoice dun-1, 236.50 USD due on {due_date}"
        assert url in mail.body("plain") and mail.rcpt_tos == [obj["spec"]["customer"]["email"]]
        assert before["dueAt"] == f"{due - dt.timedelta(days=3):%Y-%m-%dT%H:%M:%SZ}"
        assert (await get_inv(kube, namespace))["dun-1"]["Overdue"] in ("", None)

        clock.move_to(due + dt.timedelta(seconds=30))
        overdue = await cluster.wait_condition(INV, namespace, "dun-1", "Overdue", status="True")
        assert overdue["reason"] == "PastDue" and overdue["message"].startswith(f"Due {due_date}; 0 days overdue")
        assert "next reminder after-1d" in overdue["message"]
        assert (await get_inv(kube, namespace))["dun-1"]["Overdue"] == "True"
        assert len(reminders_to(smtp_sink, uid)) == 1  # after-0d is not in the default schedule

        clock.move_to(due + dt.timedelta(days=1, seconds=60))
        await wait_step(cluster, namespace, "dun-1", "after-1d")
        mails = reminders_to(smtp_sink, uid)
        assert [message_id(m) for m in mails] == [
            f"<reminder.before-3d.{uid}@fluxrate.invoice>", f"<reminder.after-1d.{uid}@fluxrate.invoice>"]
        assert mails[1].subject == f"Overdue: invoice dun-1, 236.50 USD was due on {due_date}"
        assert "is 1 day overdue" in mails[1].body("plain")
        assert any(e["reason"] == "ReminderSent" for e in await cluster.events(namespace, "dun-1"))

        payment = await stripe_standin.pay(obj["status"]["paymentLink"]["id"])
        report = report_from_object("checkout.session.completed", payment.session or {}, event_id="evt_paid_1")
        assert report is not None
        await apply_report(cluster.kube, namespace, report, integration="production-stripe")
        await wait_phase(cluster, namespace, "dun-1", "Paid")
        ended = await cluster.wait_condition(INV, namespace, "dun-1", "Overdue", status="False")
        assert ended["reason"] == "Paid"
        clock.move_to(due + dt.timedelta(days=15))
        await asyncio.sleep(1.5)
    assert len(reminders_to(smtp_sink, uid)) == 2
    assert set(await reminder_steps(cluster, namespace, "dun-1")) == {"before-3d", "after-1d"}
    assert (await get_inv(kube, namespace))["dun-1"]["Overdue"] == "False"


async def test_steps_missed_together_send_only_the_latest_and_an_invoice_override_rules(
    fast: OperatorSettings, clock: ManualClock, cluster: Cluster, stripe_standin: StripeStandin,
    smtp_sink: SmtpSink, namespace: str,
) -> None:
    due_date, due = due_in(clock, 10)
    own = {"daysBeforeDue": [5], "daysAfterDue": [2]}
    async with running_operator(fast):
        default = await open_invoice(cluster, stripe_standin, namespace, "dun-2", due_date)
        override = await open_invoice(cluster, stripe_standin, namespace, "dun-3", due_date, connected=True,
                                      reminders=own)
        off = await open_invoice(cluster, stripe_standin, namespace, "dun-4", due_date, connected=True,
                                 reminders={"enabled": False})
        clock.move_to(due + dt.timedelta(days=8))  # the operator "slept" through most of the schedule
        await wait_step(cluster, namespace, "dun-2", "after-7d")
        await wait_step(cluster, namespace, "dun-3", "after-2d")
        await cluster.wait_condition(INV, namespace, "dun-4", "Overdue", status="True")
        await asyncio.sleep(1.0)
    steps = await reminder_steps(cluster, namespace, "dun-2")
    assert {s: r.get("skipped") for s, r in steps.items()} == {
        "before-3d": "Superseded", "after-1d": "Superseded", "after-7d": None}
    assert [message_id(m) for m in reminders_to(smtp_sink, default["metadata"]["uid"])] == [
        f"<reminder.after-7d.{default['metadata']['uid']}@fluxrate.invoice>"]
    assert {s: r.get("skipped") for s, r in (await reminder_steps(cluster, namespace, "dun-3")).items()} == {
        "before-5d": "Superseded", "after-2d": None}
    assert len(reminders_to(smtp_sink, override["metadata"]["uid"])) == 1
    assert reminders_to(smtp_sink, off["metadata"]["uid"]) == []
    assert await reminder_steps(cluster, namespace, "dun-4") == {}
    overdue = await cluster.condition(INV, namespace, "dun-4", "Overdue")
    assert overdue is not None and "reminders are turned off" in overdue["message"]


async def test_a_disabled_integration_sends_no_reminders(
    fast: OperatorSettings, clock: ManualClock, cluster: Cluster, stripe_standin: StripeStandin,
    smtp_sink: SmtpSink, namespace: str,
) -> None:
    due_date, due = due_in(clock, 10)
    async with running_operator(fast):
        obj = await open_invoice(cluster, stripe_standin, namespace, "dun-5", due_date)
        await cluster.patch(SI, namespace, "production-stripe", {"spec": {"active": False}})
        await cluster.wait_condition(SI, namespace, "production-stripe", "Ready", reason="Disabled")
        clock.move_to(due + dt.timedelta(days=1, seconds=60))
        await cluster.wait_condition(INV, namespace, "dun-5", "Overdue", status="True")  # a fact, still shown
        await asyncio.sleep(1.5)
        assert reminders_to(smtp_sink, obj["metadata"]["uid"]) == []
        await cluster.patch(SI, namespace, "production-stripe", {"spec": {"active": True}})  # within one pass
        await wait_step(cluster, namespace, "dun-5", "after-1d")
    assert len(reminders_to(smtp_sink, obj["metadata"]["uid"])) == 1


async def test_smtp_failing_then_recovering_sends_exactly_one_per_step(
    fast: OperatorSettings, clock: ManualClock, cluster: Cluster, stripe_standin: StripeStandin,
    smtp_sink: SmtpSink, namespace: str,
) -> None:
    due_date, due = due_in(clock, 10)
    async with running_operator(fast):
        obj = await open_invoice(cluster, stripe_standin, namespace, "dun-6", due_date)
        smtp_sink.fail_next(2)
        clock.move_to(due - dt.timedelta(days=3, seconds=-60))
        failing = await wait_step(cluster, namespace, "dun-6", "before-3d", key="attempts")
        assert not failing.get("sentAt")
        sent = await wait_step(cluster, namespace, "dun-6", "before-3d")
        await asyncio.sleep(1.0)
        events = await cluster.events(namespace, "dun-6")
    assert sent["attempts"] == 2
    assert len(reminders_to(smtp_sink, obj["metadata"]["uid"])) == 1
    assert any(e["reason"] == "ReminderNotSent" and e["type"] == "Warning" for e in events)


async def test_an_operator_restart_does_not_resend_a_recorded_step(
    fast: OperatorSettings, clock: ManualClock, cluster: Cluster, stripe_standin: StripeStandin,
    smtp_sink: SmtpSink, namespace: str,
) -> None:
    due_date, due = due_in(clock, 10)
    async with running_operator(fast):
        obj = await open_invoice(cluster, stripe_standin, namespace, "dun-7", due_date)
        clock.move_to(due - dt.timedelta(days=3, seconds=-60))
        before = await wait_step(cluster, namespace, "dun-7", "before-3d")
    async with running_operator(fast):
        await wait_phase(cluster, namespace, "dun-7", "Open")
        await asyncio.sleep(2.0)  # resumed, scheduled, and a pass or two of its daemon
        assert (await reminder_steps(cluster, namespace, "dun-7"))["before-3d"] == before
        assert len(reminders_to(smtp_sink, obj["metadata"]["uid"])) == 1
        clock.move_to(due + dt.timedelta(days=1, seconds=60))
        await wait_step(cluster, namespace, "dun-7", "after-1d")
    assert len(reminders_to(smtp_sink, obj["metadata"]["uid"])) == 2
