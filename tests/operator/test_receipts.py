"""Receipts (issue 17): a paid invoice's customer gets one receipt email, with the operator running in-process on the
sandbox. Payments go through ``StripeStandin.pay`` (a Charge with its payment method and receipt URL); no receiver
listens, so reconciliation finds them, as after a missed webhook."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from typing import Any

import pytest

from fluxrate import conditions as cond
from fluxrate.invoice_status import update_status
from fluxrate.operator.main import running_operator
from fluxrate.operator.receipt_email import receipt_message_id
from fluxrate.operator.settings import OperatorSettings, SmtpSettings
from fluxrate_sandbox.smtp_sink import ReceivedMessage, SmtpSink
from fluxrate_sandbox.stripe_standin import StripeStandin

from ..conftest import eventually
from .conftest import Cluster
from .test_invoices import INV, connect, invoice_body, wait_phase


@pytest.fixture
def settings(operator_settings: OperatorSettings) -> OperatorSettings:
    return dataclasses.replace(operator_settings, reconcile_interval=0.5, retry_delay=0.3)


def receipts(sink: SmtpSink) -> list[ReceivedMessage]:
    return [m for m in sink.messages if m.subject.startswith("Receipt for invoice")]


async def pay(cluster: Cluster, standin: StripeStandin, namespace: str, name: str) -> tuple[dict[str, Any], str]:
    """Create the invoice, pay its link; the Paid invoice and the Stripe receipt URL of the payment's Charge."""
    await cluster.create(INV, namespace, invoice_body(name))
    obj = await wait_phase(cluster, namespace, name, "Open")
    payment = await standin.pay(obj["status"]["paymentLink"]["id"])
    charge = standin.money.charges[payment.payment_intent["latest_charge"]].obj
    return await wait_phase(cluster, namespace, name, "Paid"), charge["receipt_url"]


async def receipt_of(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    obj = await eventually(lambda: cluster.get(INV, namespace, name),
                           lambda o: bool((o["status"].get("receipt") or {}).get("sentAt")
                                          or (o["status"].get("receipt") or {}).get("skipped")), timeout=20)
    return obj["status"]["receipt"]


async def test_paid_invoice_gets_one_receipt_with_amount_method_and_url_also_after_a_restart(
    kube, settings: OperatorSettings, cluster: Cluster, stripe_standin: StripeStandin, smtp_sink: SmtpSink,
    namespace: str,
) -> None:
    async with running_operator(settings):
        await connect(cluster, stripe_standin, namespace)
        paid, receipt_url = await pay(cluster, stripe_standin, namespace, "rcpt-1")
        record = await receipt_of(cluster, namespace, "rcpt-1")
        await eventually(lambda: cluster.events(namespace, "rcpt-1"),
                         lambda events: "ReceiptSent" in {e["reason"] for e in events})
    payment_id, uid = paid["status"]["payment"]["providerPaymentId"], paid["metadata"]["uid"]
    (mail,) = receipts(smtp_sink)
    assert mail.rcpt_tos == [paid["spec"]["customer"]["email"]]
    assert mail.message["Message-ID"] == record["messageId"] == receipt_message_id(payment_id, uid)
    assert mail.message["Message-ID"] == f"<receipt.{payment_id}.{uid}@fluxrate.invoice>"
    assert record["paymentId"] == payment_id and record["attempts"] == 0
    for body in (mail.body("plain"), mail.body("html")):
        assert "236.50 USD" in body and "Visa ending 4242" in body and receipt_url in body
    reads = stripe_standin.count_requests(path="/v1/payment_intents/{id}")
    assert reads == 1  # one Stripe call for the method and the receipt URL

    async with running_operator(settings):  # resumes the Paid invoice: nothing more to send, nothing to ask
        await asyncio.sleep(2.0)  # four reconciliation intervals
    assert len(receipts(smtp_sink)) == 1
    assert stripe_standin.count_requests(path="/v1/payment_intents/{id}") == reads
    assert (await cluster.get(INV, namespace, "rcpt-1"))["status"]["receipt"] == record


async def test_receipts_turned_off_on_the_integration_send_none_and_say_so(
    kube, settings: OperatorSettings, cluster: Cluster, stripe_standin: StripeStandin, smtp_sink: SmtpSink,
    namespace: str,
) -> None:
    async with running_operator(settings):
        await connect(cluster, stripe_standin, namespace, receipts={"enabled": False})
        paid, _ = await pay(cluster, stripe_standin, namespace, "off-1")
        record = await receipt_of(cluster, namespace, "off-1")
        events = await eventually(lambda: cluster.events(namespace, "off-1"),
                                  lambda found: "ReceiptSkipped" in {e["reason"] for e in found})
        await asyncio.sleep(1.0)
    assert record["skipped"] == "ReceiptsDisabled" and not record.get("sentAt")
    assert record["paymentId"] == paid["status"]["payment"]["providerPaymentId"]
    assert receipts(smtp_sink) == [] and len(smtp_sink.messages) == 1  # the invoice email only
    assert any("spec.receipts.enabled: false" in e["message"] for e in events if e["reason"] == "ReceiptSkipped")


async def test_without_smtp_the_receipt_is_recorded_as_skipped(
    kube, settings: OperatorSettings, cluster: Cluster, stripe_standin: StripeStandin, smtp_sink: SmtpSink,
    namespace: str,
) -> None:
    async with running_operator(dataclasses.replace(settings, smtp=SmtpSettings())):
        await connect(cluster, stripe_standin, namespace)
        await pay(cluster, stripe_standin, namespace, "nosmtp-1")
        record = await receipt_of(cluster, namespace, "nosmtp-1")
    assert record["skipped"] == "SmtpNotConfigured"
    assert smtp_sink.messages == []


async def test_smtp_down_then_up_sends_one_receipt(
    kube, settings: OperatorSettings, cluster: Cluster, stripe_standin: StripeStandin, smtp_sink: SmtpSink,
    namespace: str,
) -> None:
    async with running_operator(settings):
        await connect(cluster, stripe_standin, namespace)
        await cluster.create(INV, namespace, invoice_body("down-1"))
        obj = await wait_phase(cluster, namespace, "down-1", "Open")
        await smtp_sink.wait_for(1)
        smtp_sink.fail_next(4)  # more than the tries within the invoice event: reconciliation sends it
        await stripe_standin.pay(obj["status"]["paymentLink"]["id"])
        failing = await eventually(lambda: cluster.get(INV, namespace, "down-1"),
                                   lambda o: (o["status"].get("receipt") or {}).get("attempts", 0) >= 1)
        assert not failing["status"]["receipt"].get("sentAt")
        record = await receipt_of(cluster, namespace, "down-1")
        events = await cluster.events(namespace, "down-1")
        await asyncio.sleep(1.0)
    assert record["sentAt"] and record["attempts"] == 4
    assert len(receipts(smtp_sink)) == 1
    assert any(e["reason"] == "ReceiptFailed" and "451" in e["message"] for e in events)


async def _paid_before(cluster: Cluster, namespace: str, name: str, ago: dt.timedelta, phase: str = "Paid",
                       receipt: dict[str, Any] | None = None) -> None:
    """An invoice a fluxrate without receipts (or this one, earlier) recorded as paid ``ago``."""
    created = await cluster.create(INV, namespace, invoice_body(name))
    payment = {"providerPaymentId": f"pi_{name.replace('-', '')}", "amount": "236.50", "amountMinor": 23650,
               "currency": "USD", "paidAt": cond.timestamp(cond.now() - ago), "eventId": "evt_1",
               "eventType": "checkout.session.completed", "source": "webhook"}
    status = {"phase": phase, "payment": payment, **({"receipt": receipt} if receipt else {})}
    await update_status(cluster.kube, namespace, name, lambda _: status, initial=created)


async def test_resumed_old_paid_invoices_get_no_receipt_and_cost_nothing(
    kube, settings: OperatorSettings, cluster: Cluster, stripe_standin: StripeStandin, smtp_sink: SmtpSink,
    namespace: str, caplog: pytest.LogCaptureFixture,
) -> None:
    """An upgrade: Paid invoices from before receipts existed are resumed; none is emailed, none asks Stripe."""
    async with running_operator(settings):
        await connect(cluster, stripe_standin, namespace)
    await _paid_before(cluster, namespace, "old-1", dt.timedelta(days=4))
    await _paid_before(cluster, namespace, "old-2", dt.timedelta(days=400))
    await _paid_before(cluster, namespace, "refunded-1", dt.timedelta(hours=1), phase="Refunded")
    await _paid_before(cluster, namespace, "sent-1", dt.timedelta(hours=1), receipt={
        "paymentId": "pi_sent1", "sentAt": cond.timestamp(), "messageId": "<receipt.pi_sent1.x@fluxrate.invoice>",
        "attempts": 0})
    names = {"old-1", "old-2", "refunded-1", "sent-1"}
    caplog.clear()
    async with running_operator(settings):
        await eventually(lambda: {getattr(r, "k8s_ref", {}).get("name") for r in caplog.records
                                  if r.getMessage().startswith(("Resuming is processed", "Creation is processed"))}
                         & names,
                         lambda done: done == names)
        await asyncio.sleep(1.5)  # three reconciliation intervals
    assert smtp_sink.messages == []
    assert [path for (_, path, _) in stripe_standin.request_counts if path.startswith("/v1/payment_intents")] == []
    for name in ("old-1", "old-2", "refunded-1"):
        assert "receipt" not in (await cluster.get(INV, namespace, name))["status"]
