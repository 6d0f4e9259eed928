"""Replacement links (issue 15): a failed bank debit uses the invoice's link up, or the link is deactivated in the
Stripe Dashboard; the operator issues a new link, deactivates the old one and emails the customer. And a link
whose creation was never recorded is found again after its Idempotency-Key expired (24 hours on the stand-in's
clock): never a second link.

The flows run the operator (kopf, in-process) and the webhook receiver on the sandbox; payments go through
``StripeStandin.pay``, which signs and delivers Stripe's events to the managed endpoint.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest

from fluxrate.operator.main import running_operator
from fluxrate.operator.payment_links import build_payment_link_params, payment_link_idempotency_key
from fluxrate.operator.settings import OperatorSettings
from fluxrate.stripe_api import build_stripe_client, close_stripe_client
from fluxrate.webhook_receiver.runner import RunningReceiver, running_receiver
from fluxrate_sandbox.smtp_sink import SmtpSink
from fluxrate_sandbox.stripe_standin import PaymentLinkUnavailable, StripeStandin

from ..conftest import eventually
from ..receiver.conftest import receiver_settings
from .conftest import Cluster
from .test_invoices import INV, SI, connect, invoice_body, links_for, wait_phase

DAY = 24 * 3600.0


def link_emails(sink: SmtpSink) -> list[Any]:
    """The emails of payment links (a paid invoice's customer also gets a receipt: tests/operator/test_receipts.py)."""
    return [m for m in sink.messages if not m.subject.startswith("Receipt for invoice")]


@pytest.fixture
async def receiver(kube: Any) -> AsyncIterator[RunningReceiver]:
    async with running_receiver(receiver_settings()) as running:
        yield running


@pytest.fixture
def settings(operator_settings: OperatorSettings, receiver: RunningReceiver) -> OperatorSettings:
    """Webhooks reach the in-process receiver through a managed endpoint; reconciliation every 0.5 s."""
    return dataclasses.replace(operator_settings, public_base_url=receiver.url, retry_delay=0.3,
                               reconcile_interval=0.5)


async def connect_managed(cluster: Cluster, standin: StripeStandin, namespace: str) -> tuple[str, str]:
    account_id, key = await connect(cluster, standin, namespace, webhookEndpoint={"managed": True})
    await eventually(lambda: cluster.get(SI, namespace, "production-stripe"),
                     lambda o: bool((o.get("status") or {}).get("webhookEndpointId")))
    return account_id, key


async def wait_link(cluster: Cluster, namespace: str, name: str, not_id: str, timeout: float = 20) -> dict[str, Any]:
    """The invoice once its current link is another than ``not_id`` and that link was emailed."""
    def renewed(obj: dict[str, Any] | None) -> bool:
        status = (obj or {}).get("status") or {}
        link, notification = status.get("paymentLink") or {}, status.get("notification") or {}
        return link.get("id") not in (None, not_id) and notification.get("linkId") == link["id"] \
            and bool(notification.get("sentAt"))
    return await eventually(lambda: cluster.get(INV, namespace, name), renewed, timeout=timeout)


async def test_failed_bank_debit_gets_a_replacement_link_that_is_then_paid(
    kube: Any, settings: OperatorSettings, cluster: Cluster, stripe_standin: StripeStandin, smtp_sink: SmtpSink,
    namespace: str,
) -> None:
    async with running_operator(settings):
        await connect_managed(cluster, stripe_standin, namespace)
        await cluster.create(INV, namespace, invoice_body("debit-1"))
        opened = await wait_phase(cluster, namespace, "debit-1", "Open")
        uid, first = opened["metadata"]["uid"], opened["status"]["paymentLink"]
        (first_mail,) = await smtp_sink.wait_for(1)

        # The customer pays by bank debit: the Checkout Session completes (and counts against the link's limit of
        # one), then the debit fails.
        failure = await stripe_standin.pay(first["id"], method="delayed", outcome="failed")
        assert failure.event_types[0] == "checkout.session.completed"
        await failure.delivered
        assert stripe_standin.payment_links[first["id"]].obj["restrictions"]["completed_sessions"]["count"] == 1

        renewed = await wait_link(cluster, namespace, "debit-1", first["id"])
        status = renewed["status"]
        second = status["paymentLink"]
        assert status["phase"] == "Open" and "linkRequest" not in status
        assert second["attempt"] == 2 and second["reason"] == "PaymentFailed"
        assert status["lastPaymentError"]["providerPaymentId"] == failure.payment_intent["id"]
        assert [(link["id"], link["attempt"]) for link in status["paymentLinks"]] == [(first["id"], 1),
                                                                                      (second["id"], 2)]
        assert status["paymentLinks"][-1] == second
        await eventually(lambda: cluster.get(INV, namespace, "debit-1"),
                         lambda o: o["status"]["paymentLinks"][0]["active"] is False)
        assert stripe_standin.payment_links[first["id"]].obj["active"] is False
        with pytest.raises(PaymentLinkUnavailable):
            await stripe_standin.pay(first["id"])

        # One email per link, each with its own Message-ID; the second says why a new link came.
        mails = await smtp_sink.wait_for(2)
        new_mail = mails[1]
        assert new_mail.message["Message-ID"] != first_mail.message["Message-ID"]
        assert second["id"] in new_mail.message["Message-ID"] and "new payment link" in new_mail.subject
        assert second["url"] in new_mail.body("plain") and first["url"] not in new_mail.body("plain")
        assert "did not go through" in new_mail.body("plain") and "did not go through" in new_mail.body("html")

        # Paid through the new link: Paid, by webhook, and the new link deactivated too.
        paid_through = await stripe_standin.pay(second["id"])
        paid = await wait_phase(cluster, namespace, "debit-1", "Paid")
        await eventually(lambda: cluster.get(INV, namespace, "debit-1"),
                         lambda o: all(link["active"] is False for link in o["status"]["paymentLinks"]))
        events = await cluster.events(namespace, "debit-1")
        await asyncio.sleep(0.5)  # anything still to do would create a third link or a third email now
    assert paid["status"]["payment"]["providerPaymentId"] == paid_through.payment_intent["id"]
    assert paid["status"]["payment"]["source"] == "webhook"
    assert stripe_standin.payment_links[second["id"]].obj["active"] is False
    assert len(links_for(stripe_standin, uid)) == 2 and stripe_standin.links_created_by_invoice[uid] == 2
    assert len(link_emails(smtp_sink)) == 2
    assert sum(e["reason"] == "PaymentLinkRenewed" for e in events) == 1
    # the replacement was created with the key of attempt 2
    keys = [e["request"]["idempotency_key"] for e in
            (s.obj for s in stripe_standin.events.values()) if e["type"] == "payment_link.created"]
    assert keys == [payment_link_idempotency_key(uid, 1), payment_link_idempotency_key(uid, 2)]


async def test_declined_card_keeps_the_link(
    kube: Any, settings: OperatorSettings, cluster: Cluster, stripe_standin: StripeStandin, smtp_sink: SmtpSink,
    namespace: str,
) -> None:
    """A declined card never completes a Checkout Session: Stripe says the link still takes a payment."""
    async with running_operator(settings):
        await connect_managed(cluster, stripe_standin, namespace)
        await cluster.create(INV, namespace, invoice_body("card-1"))
        opened = await wait_phase(cluster, namespace, "card-1", "Open")
        link = opened["status"]["paymentLink"]
        declined = await stripe_standin.pay(link["id"], outcome="failed")
        await declined.delivered
        checked = await eventually(lambda: cluster.get(INV, namespace, "card-1"), lambda o: bool(
            o["status"].get("lastPaymentError")) and o["status"]["paymentLink"].get("checkedError")
            == o["status"]["lastPaymentError"]["eventId"])
        await stripe_standin.pay(link["id"])
        paid = await wait_phase(cluster, namespace, "card-1", "Paid")
    assert checked["status"]["paymentLink"]["id"] == link["id"]
    assert paid["status"]["paymentLinks"] == [paid["status"]["paymentLink"]]
    assert len(links_for(stripe_standin, opened["metadata"]["uid"])) == 1
    assert len(link_emails(smtp_sink)) == 1


async def test_link_deactivated_in_the_dashboard_is_replaced(
    kube: Any, settings: OperatorSettings, cluster: Cluster, stripe_standin: StripeStandin, smtp_sink: SmtpSink,
    namespace: str,
) -> None:
    async with running_operator(settings):
        await connect_managed(cluster, stripe_standin, namespace)
        await cluster.create(INV, namespace, invoice_body("dash-1"))
        opened = await wait_phase(cluster, namespace, "dash-1", "Open")
        first = opened["status"]["paymentLink"]
        await smtp_sink.wait_for(1)
        stripe_standin.set_link_active(first["id"], False)  # someone deactivated it in the Dashboard
        renewed = await wait_link(cluster, namespace, "dash-1", first["id"])
        second = renewed["status"]["paymentLink"]
        (_, mail) = await smtp_sink.wait_for(2)
        await stripe_standin.pay(second["id"])
        paid = await wait_phase(cluster, namespace, "dash-1", "Paid")
        await asyncio.sleep(1.0)  # two more reconciliation passes: no third link
    assert second["reason"] == "LinkDeactivated" and second["attempt"] == 2
    assert renewed["status"]["paymentLinks"][0]["id"] == first["id"]
    assert renewed["status"]["paymentLinks"][0]["active"] is False
    assert "no longer works" in mail.body("plain") and second["url"] in mail.body("plain")
    assert paid["status"]["payment"]["source"] == "webhook"
    assert len(links_for(stripe_standin, opened["metadata"]["uid"])) == 2
    assert len(link_emails(smtp_sink)) == 2


async def test_payment_through_a_replaced_link_is_recorded(
    kube: Any, settings: OperatorSettings, cluster: Cluster, stripe_standin: StripeStandin, namespace: str,
) -> None:
    """Matching is on any of the invoice's links: re-activated in the Dashboard and paid, the old link pays."""
    async with running_operator(settings):
        await connect_managed(cluster, stripe_standin, namespace)
        await cluster.create(INV, namespace, invoice_body("old-1"))
        first = (await wait_phase(cluster, namespace, "old-1", "Open"))["status"]["paymentLink"]
        stripe_standin.set_link_active(first["id"], False)
        second = (await wait_link(cluster, namespace, "old-1", first["id"]))["status"]["paymentLink"]
        stripe_standin.set_link_active(first["id"], True)  # switched back on by hand
        paid_through = await stripe_standin.pay(first["id"])
        paid = await wait_phase(cluster, namespace, "old-1", "Paid")
        await eventually(lambda: stripe_standin.payment_links[second["id"]].obj["active"], lambda a: a is False)
    assert paid["status"]["payment"]["providerPaymentId"] == paid_through.payment_intent["id"]
    assert paid["status"]["payment"]["source"] == "webhook"
    assert [link["id"] for link in paid["status"]["paymentLinks"]] == [first["id"], second["id"]]


async def test_unrecorded_link_is_found_after_its_idempotency_key_expired(
    kube: Any, operator_settings: OperatorSettings, cluster: Cluster, stripe_standin: StripeStandin,
    smtp_sink: SmtpSink, namespace: str,
) -> None:
    """The link was created but its status write never landed; the operator comes back 25 hours later (on the
    stand-in's clock), when Stripe has forgotten the Idempotency-Key: it finds the link by its metadata."""
    fast = dataclasses.replace(operator_settings, retry_delay=0.3)
    async with running_operator(fast):
        await connect(cluster, stripe_standin, namespace)
        stripe_standin.set_faults(latency_s=1.0)
        await cluster.create(INV, namespace, invoice_body("late-1"))
        await wait_phase(cluster, namespace, "late-1", "Finalized")
        kube.faults.fail_always(500, method="PATCH", resource="invoices", subresource="status", name="late-1")
        await eventually(lambda: stripe_standin.links_created_by_invoice, lambda c: sum(c.values()) >= 1)
    kube.faults.clear()
    stripe_standin.reset_faults()
    stored = await cluster.get(INV, namespace, "late-1")
    assert stored["status"]["phase"] == "Finalized" and stored["status"]["linkRequest"]["attempt"] == 1
    stripe_standin.advance_clock(DAY + 3600)
    async with running_operator(fast):
        obj = await wait_phase(cluster, namespace, "late-1", "Open")
        await smtp_sink.wait_for(1)
        await asyncio.sleep(0.5)
    (link,) = links_for(stripe_standin, obj["metadata"]["uid"])
    assert obj["status"]["paymentLink"]["id"] == link.obj["id"]
    assert stripe_standin.count_requests(method="POST", path="/v1/payment_links", status=200) == 1
    assert len(smtp_sink.messages) == 1


async def test_a_renewal_cut_short_resumes_with_the_same_replacement_after_key_expiry(
    kube: Any, settings: OperatorSettings, cluster: Cluster, stripe_standin: StripeStandin, smtp_sink: SmtpSink,
    namespace: str,
) -> None:
    """An operator died after Stripe created the replacement and before recording it (status.linkRequest is
    left), and the key expired meanwhile: the next operator adopts that replacement, never a third link."""
    from fluxrate.models import AfterCompletion, InvoiceSpec

    async with running_operator(settings):
        _, key = await connect_managed(cluster, stripe_standin, namespace)
        body = invoice_body("cut-1")
        await cluster.create(INV, namespace, body)
        opened = await wait_phase(cluster, namespace, "cut-1", "Open")
        await smtp_sink.wait_for(1)
    uid, first = opened["metadata"]["uid"], opened["status"]["paymentLink"]
    # What the dead operator did: record the renewal, create link 2 with its key.
    stripe_standin.set_link_active(first["id"], False)
    await cluster.kube.patch_status(INV, namespace, "cut-1", {"linkRequest": {
        "attempt": 2, "reason": "LinkDeactivated", "replacesLinkId": first["id"],
        "requestedAt": "2026-01-01T00:00:00Z"}})
    client = build_stripe_client(key, api_base=stripe_standin.url, max_network_retries=0)
    try:
        params = build_payment_link_params(namespace, "cut-1", uid, InvoiceSpec.model_validate(body["spec"]),
                                           AfterCompletion())
        made = await client.v1.payment_links.create_async(
            params=params, options={"idempotency_key": payment_link_idempotency_key(uid, 2)})
    finally:
        await close_stripe_client(client)
    stripe_standin.advance_clock(DAY + 3600)
    posts = stripe_standin.count_requests(method="POST", path="/v1/payment_links")
    async with running_operator(settings):
        renewed = await wait_link(cluster, namespace, "cut-1", first["id"])
        await smtp_sink.wait_for(2)
        await asyncio.sleep(1.0)
    assert renewed["status"]["paymentLink"]["id"] == made.id
    assert renewed["status"]["paymentLink"]["attempt"] == 2
    assert stripe_standin.count_requests(method="POST", path="/v1/payment_links") == posts
    assert len(links_for(stripe_standin, uid)) == 2
    assert len(smtp_sink.messages) == 2


async def test_standin_idempotency_keys_expire_after_24_hours(stripe_standin: StripeStandin) -> None:
    """The stand-in keeps a key's result for 24 hours on its clock, like Stripe; after that the key is new."""
    _, key = stripe_standin.add_account()
    client = build_stripe_client(key, api_base=stripe_standin.url, max_network_retries=0)
    params = {"line_items": [{"price_data": {"currency": "usd", "product_data": {"name": "x"}, "unit_amount": 500},
                              "quantity": 1}]}
    try:
        first = await client.v1.payment_links.create_async(params=params, options={"idempotency_key": "k-1"})
        stripe_standin.advance_clock(DAY - 60)
        replay = await client.v1.payment_links.create_async(params=params, options={"idempotency_key": "k-1"})
        stripe_standin.advance_clock(120)
        fresh = await client.v1.payment_links.create_async(params=params, options={"idempotency_key": "k-1"})
    finally:
        await close_stripe_client(client)
    assert replay.id == first.id and stripe_standin.idempotent_replays == 1
    assert fresh.id != first.id


def test_a_pending_report_after_its_own_failure_does_not_hold_the_invoice() -> None:
    """Events arrive in any order: the session's "completed, unpaid" after the failure of the same payment must not
    leave a pendingPayment behind (it would hold the renewal back)."""
    from fluxrate.payments import decide, report_from_object

    session = {"id": "cs_test_9", "payment_intent": "pi_9", "amount_total": 23650, "currency": "usd",
               "payment_status": "unpaid", "metadata": {"invoice_id": "inv-9"}}
    invoice: dict[str, Any] = {"metadata": {"name": "inv-9", "generation": 1},
                               "spec": {"currency": "USD"}, "status": {"phase": "Open"}}
    failed = report_from_object("checkout.session.async_payment_failed", session, event_id="evt_failed")
    pending = report_from_object("checkout.session.completed", session, event_id="evt_completed")
    assert failed is not None and pending is not None
    after_failure = decide(invoice, failed).changes
    assert after_failure is not None
    assert after_failure["lastPaymentError"]["providerPaymentId"] == "pi_9"
    assert after_failure["lastPaymentError"]["checkoutSessionId"] == "cs_test_9"
    late = decide({**invoice, "status": {**invoice["status"], **after_failure}}, pending)
    assert late.outcome == "applied" and late.changes is not None and "pendingPayment" not in late.changes
    assert "evt_completed" in late.changes["processedEvents"]
    in_order = decide(invoice, pending).changes
    assert in_order is not None and in_order["pendingPayment"]["checkoutSessionId"] == "cs_test_9"


def test_stripes_answer_decides_whether_a_link_is_used_up() -> None:
    from fluxrate.operator.payment_links import unusable_because

    assert unusable_because({"active": True, "restrictions": {"completed_sessions": {"count": 0, "limit": 1}}}) \
        is None
    assert "limit of 1" in (unusable_because(
        {"active": True, "restrictions": {"completed_sessions": {"count": 1, "limit": 1}}}) or "")
    assert unusable_because({"active": False, "restrictions": None}) == "it is deactivated"
    assert unusable_because({"active": True, "restrictions": None}) is None
