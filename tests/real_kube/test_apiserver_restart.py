"""A fault only the real thing can show: kube-apiserver killed and restarted (etcd keeps the data) in the middle of
a 50-invoice finalization and of a 3x webhook storm. Nothing is lost and every invoice has exactly one link."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from fluxrate.operator.email import message_id
from fluxrate.operator.receipt_email import receipt_message_id
from fluxrate_sandbox.processes import wait_for
from fluxrate_sandbox.real_kube import RealKube
from tests.real_kube.chart_stack import GROUP_VERSION, Obj, chart_stack
from tests.real_kube.test_flow import connected, integration, invoice, is_open, secret

pytestmark = pytest.mark.timeout(420)

COUNT = 50
NS = "storm"


async def invoices(kube: RealKube) -> list[Obj]:
    return await kube.list_objects(GROUP_VERSION, "invoices", NS)


async def cut(kube: RealKube) -> None:
    """SIGKILL the API server and start it again 2 s later, on the same port and etcd."""
    await asyncio.to_thread(kube.restart_apiserver, kill=True, down_for=2.0)


def count(found: list[Obj], check: Callable[[Obj], bool]) -> int:
    return sum(1 for obj in found if check(obj))


def is_paid(obj: Obj) -> bool:
    return (obj.get("status") or {}).get("phase") == "Paid"


async def test_apiserver_restart_mid_finalization_and_mid_storm(own_real_kube: RealKube, tmp_path: Path) -> None:
    kube = own_real_kube
    await kube.ensure_namespace(NS)
    # Stripe retries a failed delivery for hours; scaled by 0.01 its retries span 20 s, longer than the outage.
    async with chart_stack(kube, {}, tmp_path / "stack", webhook_time_scale=0.01) as stack:
        _, key = stack.stripe.add_account()
        await kube.create_object(secret(NS, "stripe-credentials", {"secret-key": key}))
        await kube.create_object(integration(NS, "stripe", webhookEndpoint={"managed": True}))
        await stack.wait("the integration to connect", "stripeintegrations", NS, "stripe", connected)

        names = [f"inv-{i:03d}" for i in range(COUNT)]
        await asyncio.gather(*(kube.create_object(invoice(NS, name)) for name in names))
        at_cut = await wait_for("the first invoice to be Open", lambda: invoices(kube),
                                lambda found: count(found, is_open) >= 1, timeout=120, interval=0.05)
        await cut(kube)
        assert count(at_cut, is_open) < COUNT, "the restart came after the finalization: it proves nothing"

        finalized = await wait_for(f"{COUNT} invoices to be Open and emailed", lambda: invoices(kube),
                                   lambda found: count(found, is_open) == COUNT, timeout=180)
        by_name = {i["metadata"]["name"]: i for i in finalized}

        # The storm: every invoice paid at once, each event delivered three times in shuffled order.
        payments = await asyncio.gather(*(
            stack.stripe.pay(by_name[name]["status"]["paymentLink"]["id"], duplicate=3, reorder=True)
            for name in names))
        assert count(await invoices(kube), is_paid) < COUNT, "the storm was over before the restart"
        await cut(kube)
        await asyncio.gather(*(p.delivered for p in payments))
        done = await wait_for(f"{COUNT} invoices to be Paid", lambda: invoices(kube),
                              lambda found: count(found, is_paid) == COUNT, timeout=180)

    assert kube.apiserver_starts == 3
    paid = {i["metadata"]["name"]: i for i in done}
    for name, payment in zip(names, payments, strict=True):
        assert paid[name]["status"]["payment"]["providerPaymentId"] == payment.payment_intent["id"]
    assert [stack.stripe.links_created_by_invoice[i["metadata"]["uid"]] for i in done] == [1] * COUNT
    # Email is at-least-once with one stable Message-ID per message: every customer got their link's email, and
    # at most its receipt besides (receipts may still be on their way when the stack stops), each under one id.
    received: dict[str, set[str]] = {}
    for mail in stack.smtp.messages:
        for to in mail.rcpt_tos:
            received.setdefault(to, set()).add(str(mail.message["Message-ID"]).strip())
    assert len(received) == COUNT
    for obj in done:
        uid, status = obj["metadata"]["uid"], obj["status"]
        link_email = message_id(status["paymentLink"]["id"], uid)
        receipt = receipt_message_id(status["payment"]["providerPaymentId"], uid)
        ids = received[obj["spec"]["customer"]["email"]]
        assert link_email in ids and ids <= {link_email, receipt}, (obj["metadata"]["name"], ids)
