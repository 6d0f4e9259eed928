"""Missed webhooks recovered through Stripe's Events API (issue 18): a delivery that failed until Stripe gave up
is applied by the next reconciliation pass, from a cursor that survives a restart; what a pass costs Stripe does not
grow with the open invoices; an invoice older than Stripe's 30 days of events still gets its Checkout Session check."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from fluxrate.operator.main import running_operator
from fluxrate.operator.recovery import CHECKS_PER_INTERVAL, NOTE, CheckTurns, in_doubt
from fluxrate.operator.settings import OperatorSettings
from fluxrate.webhook_receiver.runner import RunningReceiver, running_receiver
from fluxrate_sandbox.kube_server import KubeSandbox
from fluxrate_sandbox.stripe_standin import EVENT_RETENTION_S, StripeStandin

from ..conftest import GROUP_VERSION, eventually
from ..receiver.conftest import receiver_settings
from .conftest import Cluster
from .test_invoices import INV, SI, connect, invoice_body, wait_phase

UNREACHABLE = "http://127.0.0.1:9/unreachable"  # the discard port: every delivery fails until Stripe gives up
EVENTS = ("GET", "/v1/events")
SESSIONS = ("GET", "/v1/checkout/sessions")
INTEGRATION = "production-stripe"


@pytest.fixture
async def receiver(kube: Any) -> AsyncIterator[RunningReceiver]:
    async with running_receiver(receiver_settings()) as running:
        yield running


@pytest.fixture
def settings(operator_settings: OperatorSettings, receiver: RunningReceiver) -> OperatorSettings:
    """A managed endpoint at the in-process receiver; a reconciliation (and events recovery) pass every second."""
    return dataclasses.replace(operator_settings, public_base_url=receiver.url, retry_delay=0.3, reconcile_interval=1.0)


async def connect_managed(cluster: Cluster, standin: StripeStandin, namespace: str) -> str:
    """Connected with a managed endpoint; returns the endpoint's id."""
    await connect(cluster, standin, namespace, webhookEndpoint={"managed": True})
    found = await eventually(lambda: cluster.get(SI, namespace, INTEGRATION),
                             lambda o: bool((o.get("status") or {}).get("webhookEndpointId")))
    return str(found["status"]["webhookEndpointId"])


def lose_webhooks(standin: StripeStandin, endpoint_id: str) -> None:
    standin.tamper_endpoint(endpoint_id, url=UNREACHABLE)


async def recovery_status(cluster: Cluster, namespace: str, at_least: int) -> dict[str, Any]:
    found = await eventually(lambda: cluster.get(SI, namespace, INTEGRATION),
                             lambda o: ((o.get("status") or {}).get("eventsRecovery") or {}).get("recovered", 0)
                             >= at_least)
    return dict(found["status"]["eventsRecovery"])


def given_up(standin: StripeStandin, events: list[dict[str, Any]]) -> bool:
    """Every delivery of these events failed, and Stripe stopped retrying (4 attempts in test mode)."""
    attempts = [a for e in events for a in standin.deliveries_for(e["id"])]
    return bool(attempts) and all(a.status is None for a in attempts) and \
        {a.attempt for a in attempts} == {1, 2, 3, 4}


async def test_a_webhook_lost_until_retries_gave_up_is_recovered_by_the_next_pass(
    kube: KubeSandbox, settings: OperatorSettings, cluster: Cluster, stripe_standin: StripeStandin, namespace: str,
) -> None:
    async with running_operator(dataclasses.replace(settings, reconcile_interval=3.0)):
        endpoint = await connect_managed(cluster, stripe_standin, namespace)
        await cluster.create(INV, namespace, invoice_body("lost-1"))
        opened = await wait_phase(cluster, namespace, "lost-1", "Open")
        lose_webhooks(stripe_standin, endpoint)
        sessions_before = stripe_standin.count_requests(*SESSIONS)
        paid_through = await stripe_standin.pay(opened["status"]["paymentLink"]["id"])
        await paid_through.delivered
        assert given_up(stripe_standin, paid_through.events)
        paid = await wait_phase(cluster, namespace, "lost-1", "Paid", timeout=20)
        await eventually(lambda: cluster.get(INV, namespace, "lost-1"),
                         lambda o: o["status"]["paymentLink"]["active"] is False)
        recovery = await recovery_status(cluster, namespace, 1)
        events = await cluster.events(namespace, "lost-1")
    payment = paid["status"]["payment"]
    assert payment["source"] == "reconciliation"
    assert payment["providerPaymentId"] == paid_through.payment_intent["id"]
    assert payment["eventId"] in {e["id"] for e in paid_through.events}
    assert [e for e in events if e["reason"] == "Paid"] == [
        {"reason": "Paid", "type": "Normal", "message": next(e["message"] for e in events if e["reason"] == "Paid")}]
    assert NOTE in next(e["message"] for e in events if e["reason"] == "Paid")
    assert recovery["recovered"] == 1
    # found through the Events API: no Checkout Session listing for this invoice (it is not in doubt)
    assert stripe_standin.count_requests(*SESSIONS) == sessions_before


async def test_a_lost_refund_is_recovered(
    kube: KubeSandbox, settings: OperatorSettings, cluster: Cluster, stripe_standin: StripeStandin, namespace: str,
) -> None:
    async with running_operator(settings):
        endpoint = await connect_managed(cluster, stripe_standin, namespace)
        await cluster.create(INV, namespace, invoice_body("refund-1"))
        opened = await wait_phase(cluster, namespace, "refund-1", "Open")
        paid_through = await stripe_standin.pay(opened["status"]["paymentLink"]["id"])
        paid = await wait_phase(cluster, namespace, "refund-1", "Paid")
        assert paid["status"]["payment"]["source"] == "webhook"
        lose_webhooks(stripe_standin, endpoint)
        refunded = await stripe_standin.refund(paid_through.payment_intent["id"])
        await refunded.delivered
        assert given_up(stripe_standin, refunded.events)
        final = await wait_phase(cluster, namespace, "refund-1", "Refunded", timeout=20)
        events = await cluster.events(namespace, "refund-1")
    assert final["status"]["amountRefunded"]["minor"] == paid["status"]["payment"]["amountMinor"]
    assert any(e["reason"] == "Refunded" and NOTE in e["message"] for e in events)


async def test_the_cursor_survives_an_operator_restart(
    kube: KubeSandbox, settings: OperatorSettings, cluster: Cluster, stripe_standin: StripeStandin, namespace: str,
) -> None:
    """No event is applied twice, none is skipped: a payment made while the operator is down is recovered by the
    next operator, from the cursor the first one left in the integration's status."""
    async with running_operator(settings):
        endpoint = await connect_managed(cluster, stripe_standin, namespace)
        for name in ("before-1", "during-1"):
            await cluster.create(INV, namespace, invoice_body(name))
        first = await wait_phase(cluster, namespace, "before-1", "Open")
        second = await wait_phase(cluster, namespace, "during-1", "Open")
        lose_webhooks(stripe_standin, endpoint)
        await (await stripe_standin.pay(first["status"]["paymentLink"]["id"])).delivered
        await wait_phase(cluster, namespace, "before-1", "Paid", timeout=20)
        left = await recovery_status(cluster, namespace, 1)
    during = await stripe_standin.pay(second["status"]["paymentLink"]["id"])  # nobody listening, nobody polling
    await during.delivered
    assert left["cursor"] <= min(e["created"] for e in during.events)
    async with running_operator(settings):
        paid = await wait_phase(cluster, namespace, "during-1", "Paid", timeout=20)
        after = await recovery_status(cluster, namespace, 2)
        await asyncio.sleep(2.5)  # two more passes over the same seconds (the overlap): nothing applied again
        final = await cluster.get(SI, namespace, INTEGRATION)
        before_events = await cluster.events(namespace, "before-1")
    assert paid["status"]["payment"]["source"] == "reconciliation"
    assert after["cursor"] >= left["cursor"] and final["status"]["eventsRecovery"]["recovered"] == 2
    assert len([e for e in before_events if e["reason"] == "Paid"]) == 1


async def test_an_invoice_older_than_thirty_days_gets_its_checkout_session_check(
    kube: KubeSandbox, settings: OperatorSettings, cluster: Cluster, stripe_standin: StripeStandin, namespace: str,
) -> None:
    """Its payment's events are past Stripe's 30 days: only asking Stripe about its link finds the payment."""
    async with running_operator(settings):
        endpoint = await connect_managed(cluster, stripe_standin, namespace)
        await cluster.create(INV, namespace, invoice_body("old-1"))
        opened = await wait_phase(cluster, namespace, "old-1", "Open")
        lose_webhooks(stripe_standin, endpoint)
        month_ago = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - EVENT_RETENTION_S - 3600))
        link = {**opened["status"]["paymentLink"], "createdAt": month_ago}
        await cluster.kube.patch_status(INV, namespace, "old-1", {"paymentLink": link, "paymentLinks": [link]})
        paid_through = await stripe_standin.pay(link["id"])
        stripe_standin.advance_clock(EVENT_RETENTION_S + 60)  # its events are gone before any pass reads them
        paid = await wait_phase(cluster, namespace, "old-1", "Paid", timeout=20)
        events = await cluster.events(namespace, "old-1")
    assert paid["status"]["payment"]["providerPaymentId"] == paid_through.payment_intent["id"]
    assert paid["status"]["payment"]["source"] == "reconciliation"
    assert any("older than the 30 days Stripe keeps events" in e["message"] for e in events if e["reason"] == "Paid")


def test_checks_of_invoices_in_doubt_are_bounded_per_interval_and_each_gets_its_turn() -> None:
    turns = CheckTurns(interval=600.0)
    names = [f"inv-{i}" for i in range(100)]
    granted = [n for n in names if turns.take(n, 0.0) is None]
    assert len(granted) == 1  # the others each wait for a turn of their own, 30 s apart
    waits = sorted(turns.take(n, 0.0) or 0.0 for n in names if n not in granted)
    assert len(set(waits)) == 99 and waits[0] == pytest.approx(600.0 / CHECKS_PER_INTERVAL)
    in_first_interval = 1 + sum(1 for w in waits if w < 600.0)
    assert in_first_interval == CHECKS_PER_INTERVAL
    assert all(turns.take(n, w) is None for n, w in zip(sorted(names[1:], key=lambda n: turns.turns[n]),
                                                        waits, strict=True))


def test_in_doubt_is_what_the_events_api_cannot_answer_for() -> None:
    now = 1_800_000_000.0
    def body(link_age: float, pending_age: float | None = None) -> dict[str, Any]:
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - link_age))
        status: dict[str, Any] = {"phase": "Open", "paymentLink": {"id": "plink_1", "createdAt": at}}
        if pending_age is not None:
            status["pendingPayment"] = {"since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - pending_age))}
        return {"metadata": {"name": "x"}, "status": status}
    covered = int(now) - 10 * 86400
    assert in_doubt(body(86400), covered, now) is None
    assert "30 days" in str(in_doubt(body(31 * 86400), covered, now))
    assert "recovery has read" in str(in_doubt(body(11 * 86400), covered, now))
    assert "pending" in str(in_doubt(body(86400, pending_age=8 * 86400), covered, now))
    assert in_doubt(body(86400, pending_age=86400), covered, now) is None


# --- what a pass costs Stripe: 20 open invoices, then 20,000 --------------------------------------------------


def clone_open(kube: KubeSandbox, source: dict[str, Any], namespace: str, count: int, prefix: str) -> None:
    """``count`` copies of an Open invoice written straight into the emulator's store (as bench.memory does)."""
    meta = source["metadata"]
    kept = {k: copy.deepcopy(meta[k]) for k in ("labels", "annotations", "finalizers") if meta.get(k)}
    for index in range(count):
        name = f"{prefix}-{index:05d}"
        kube.emulator.create_object({"apiVersion": GROUP_VERSION, "kind": "Invoice", "metadata": {
            **kept, "name": name, "namespace": namespace}, "spec": copy.deepcopy(source["spec"])})
        kube.emulator.patch_object(GROUP_VERSION, "invoices", namespace, name,
                                   {"status": copy.deepcopy(source["status"])}, subresource="status")


async def requests_per_pass(standin: StripeStandin, passes: int, interval: float) -> float:
    before = sum(standin.request_counts.values())
    await asyncio.sleep(passes * interval)
    return (sum(standin.request_counts.values()) - before) / passes


@pytest.mark.timeout(600)
async def test_twenty_thousand_open_invoices_cost_the_same_stripe_requests_per_pass_as_twenty(
    kube: KubeSandbox, settings: OperatorSettings, cluster: Cluster, stripe_standin: StripeStandin, namespace: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)  # kopf's DEBUG lines for 20,000 invoices would be most of the test's time
    interval = 2.0
    async with running_operator(dataclasses.replace(settings, reconcile_interval=interval)):
        await connect_managed(cluster, stripe_standin, namespace)
        await cluster.create(INV, namespace, invoice_body("seed"))
        seed = await wait_phase(cluster, namespace, "seed", "Open")
        await eventually(lambda: cluster.get(INV, namespace, "seed"),
                         lambda o: bool((o["status"].get("notification") or {}).get("sentAt")))
        seed = await cluster.get(INV, namespace, "seed")
        assert seed is not None
        clone_open(kube, seed, namespace, 19, "few")
        await asyncio.sleep(2 * interval)  # every clone seen and first scheduled
        few = await requests_per_pass(stripe_standin, 3, interval)
        clone_open(kube, seed, namespace, 20_000 - 20, "many")
        await cluster.create(INV, namespace, invoice_body("sentinel"))  # seen once every clone before it was
        await wait_phase(cluster, namespace, "sentinel", "Open", timeout=120)
        await asyncio.sleep(interval)
        many = await requests_per_pass(stripe_standin, 3, interval)
        listed = stripe_standin.count_requests(*EVENTS)
    assert few <= 3 and many <= 3, (few, many)  # the events listings (and at most a page more), not one per invoice
    assert listed >= 6
