"""Invoices, with the kopf operator running in-process on the sandbox."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from fluxrate.invoice_status import update_status
from fluxrate.operator.main import running_operator
from fluxrate.operator.settings import OperatorSettings, SmtpSettings
from fluxrate.payments import apply_report, report_from_object
from fluxrate_sandbox.smtp_sink import SmtpSink
from fluxrate_sandbox.stripe_standin import StripeStandin

from ..conftest import eventually
from ..manifests import example
from .conftest import Cluster

SI, INV = "stripeintegrations", "invoices"


def invoice_body(name: str, currency: str = "USD", **spec: Any) -> dict[str, Any]:
    doc = example("Invoice", currency)
    doc["metadata"] = {"name": name}
    doc["spec"].update(spec)
    doc.pop("apiVersion")
    return doc


async def connect(cluster: Cluster, standin: StripeStandin, namespace: str, **spec: Any) -> tuple[str, str]:
    account_id, key = standin.add_account()
    await cluster.apply_secret(namespace, "stripe", {"secret-key": key})
    await cluster.create(SI, namespace, {
        "kind": "StripeIntegration", "metadata": {"name": "production-stripe"},
        "spec": {"secretKeyRef": {"name": "stripe", "key": "secret-key"}, **spec},
    })
    if spec.get("active", True):
        await cluster.wait_condition(SI, namespace, "production-stripe", "Ready", status="True")
    else:
        await cluster.wait_condition(SI, namespace, "production-stripe", "Ready", reason="Disabled")
    return account_id, key


async def wait_phase(cluster: Cluster, namespace: str, name: str, phase: str, timeout: float = 15) -> dict[str, Any]:
    return await eventually(lambda: cluster.get(INV, namespace, name),
                            lambda o: o is not None and (o.get("status") or {}).get("phase") == phase, timeout=timeout)


def links_for(standin: StripeStandin, uid: str) -> list[dict[str, Any]]:
    return [s for s in standin.payment_links.values() if s.obj["metadata"].get("invoice_uid") == uid]


@pytest.fixture
def fast(operator_settings: OperatorSettings) -> OperatorSettings:
    return dataclasses.replace(operator_settings, retry_delay=0.3)


async def test_finalized_usd_and_jpy_invoices_get_one_link_and_one_email(
    operator, cluster: Cluster, stripe_standin: StripeStandin, smtp_sink: SmtpSink, namespace: str
) -> None:
    await connect(cluster, stripe_standin, namespace)
    await cluster.create(INV, namespace, invoice_body("usd-1", "USD"))
    await cluster.create(INV, namespace, invoice_body("jpy-1", "JPY"))
    usd = await wait_phase(cluster, namespace, "usd-1", "Open")
    jpy = await wait_phase(cluster, namespace, "jpy-1", "Open")
    await smtp_sink.wait_for(2)
    expected = {"usd-1": ([("Platform subscription (November)", 19900, 1), ("Extra seats", 1250, 3)], 23650),
                "jpy-1": ([("Consulting (hours)", 15000, 4)], 60000)}
    for obj in (usd, jpy):
        name, uid = obj["metadata"]["name"], obj["metadata"]["uid"]
        (stored,) = links_for(stripe_standin, uid)
        metadata = {"invoice_id": name, "customer_id": obj["spec"]["customer"]["id"], "namespace": namespace,
                    "invoice_uid": uid}
        assert stored.obj["metadata"] == metadata
        assert stored.obj["payment_intent_data"]["metadata"] == metadata
        assert stored.obj["restrictions"]["completed_sessions"]["limit"] == 1
        lines = [(li["description"], li["price"]["unit_amount"], li["quantity"]) for li in stored.line_items]
        assert lines == expected[name][0]
        assert obj["status"]["amountDue"]["minor"] == expected[name][1]
        assert obj["status"]["paymentLink"] == {**obj["status"]["paymentLink"], "id": stored.obj["id"],
                                                "url": stored.obj["url"], "active": True}
        (mail,) = smtp_sink.to(obj["spec"]["customer"]["email"])
        assert stored.obj["url"] in mail.body("plain") and stored.obj["url"] in mail.body("html")
        assert obj["status"]["amountDue"]["display"] in mail.subject
    # one Event for a link created and emailed in the same run (each Event is a request to the API server)
    events = await eventually(lambda: cluster.events(namespace, "usd-1"),
                              lambda events: "PaymentLinkCreated" in {e["reason"] for e in events})
    (created,) = [e for e in events if e["reason"] == "PaymentLinkCreated"]
    assert "Emailed the payment link to" in created["message"]
    assert "CustomerNotified" not in {e["reason"] for e in events}
    notified = await cluster.wait_condition(INV, namespace, "jpy-1", "CustomerNotified", status="True")
    assert "keiri@tanaka.example" in notified["message"]


async def test_an_invoice_costs_six_kubernetes_requests_on_its_way_to_open(
    kube, operator, cluster: Cluster, stripe_standin: StripeStandin, smtp_sink: SmtpSink, namespace: str
) -> None:
    """Issue 18: the three status writes (linkRequest before the POST, the link before the email, the email after
    the SMTP server took it), one Event, kopf's finalizer and its handled-configuration patch. Nothing is read:
    kopf's body is the start, the resourceVersion guard catches a stale one, the integration is in memory."""
    emulator = kube.emulator
    await connect(cluster, stripe_standin, namespace)
    await asyncio.sleep(0.5)  # the integration's own requests settle
    before = emulator.request_count
    await cluster.create(INV, namespace, invoice_body("count-1"))

    def done() -> bool:
        obj = emulator.get_object("billing.fluxrate.co/v1alpha1", "invoices", namespace, "count-1") or {}
        handled = "operator.billing.fluxrate.co/last-handled-configuration" in (obj["metadata"].get("annotations")
                                                                                  or {}) if obj else False
        events = emulator.list_objects("v1", "events", namespace)
        return handled and bool(((obj.get("status") or {}).get("notification") or {}).get("sentAt")) \
            and any(e["reason"] == "PaymentLinkCreated" for e in events)

    await eventually(done)
    await asyncio.sleep(0.5)
    log = list(emulator.request_log)[-(emulator.request_count - before):]
    made = sorted((method, path.split("?")[0].rsplit("/", 1)[-1]) for method, path, _ in log
                  if not (method == "POST" and path.split("?")[0].endswith("/invoices")))  # the test's create
    assert made == [("PATCH", "count-1"), ("PATCH", "count-1"), ("PATCH", "status"), ("PATCH", "status"),
                    ("PATCH", "status"), ("POST", "events")], log


async def test_draft_invoice_shows_its_total_and_sends_nothing(
    operator, cluster: Cluster, stripe_standin: StripeStandin, smtp_sink: SmtpSink, namespace: str
) -> None:
    await connect(cluster, stripe_standin, namespace)
    await cluster.create(INV, namespace, invoice_body("draft-1", state="Draft"))
    obj = await wait_phase(cluster, namespace, "draft-1", "Draft")
    assert obj["status"]["amountDue"]["display"] == "236.50 USD"
    assert stripe_standin.count_requests(path="/v1/payment_links") == 0
    assert smtp_sink.messages == []


async def test_failed_status_write_after_link_creation_leaves_one_link_and_one_email(
    kube, fast: OperatorSettings, cluster: Cluster, stripe_standin: StripeStandin, smtp_sink: SmtpSink,
    namespace: str,
) -> None:
    async with running_operator(fast):
        await connect(cluster, stripe_standin, namespace)
        stripe_standin.set_faults(latency_s=1.0)  # room to arm the fault between "Finalized" and "Open"
        await cluster.create(INV, namespace, invoice_body("crash-1"))
        await wait_phase(cluster, namespace, "crash-1", "Finalized")
        rule = kube.faults.fail_next(1, 500, method="PATCH", resource="invoices", subresource="status",
                                     name="crash-1")
        obj = await wait_phase(cluster, namespace, "crash-1", "Open")
        stripe_standin.reset_faults()
        await smtp_sink.wait_for(1)
        await asyncio.sleep(0.5)
    assert rule.hits == 1
    assert len(links_for(stripe_standin, obj["metadata"]["uid"])) == 1
    # the retry found the link by its metadata (status.linkRequest said a request was made), without a 2nd POST
    assert stripe_standin.count_requests(method="POST", path="/v1/payment_links") == 1
    assert stripe_standin.count_requests(method="GET", path="/v1/payment_links") >= 1
    assert "linkRequest" not in obj["status"]
    assert len(smtp_sink.messages) == 1


async def test_operator_restart_between_link_and_status_leaves_one_link_and_one_email(
    kube, fast: OperatorSettings, cluster: Cluster, stripe_standin: StripeStandin, smtp_sink: SmtpSink,
    namespace: str,
) -> None:
    async with running_operator(fast):
        await connect(cluster, stripe_standin, namespace)
        stripe_standin.set_faults(latency_s=1.0)
        await cluster.create(INV, namespace, invoice_body("crash-2"))
        await wait_phase(cluster, namespace, "crash-2", "Finalized")
        kube.faults.fail_always(500, method="PATCH", resource="invoices", subresource="status", name="crash-2")
        await eventually(lambda: stripe_standin.links_created_by_invoice, lambda c: sum(c.values()) >= 1)
    kube.faults.clear()
    stripe_standin.reset_faults()
    async with running_operator(fast):
        obj = await wait_phase(cluster, namespace, "crash-2", "Open")
        await smtp_sink.wait_for(1)
        await asyncio.sleep(0.5)
    assert len(links_for(stripe_standin, obj["metadata"]["uid"])) == 1
    assert len(smtp_sink.messages) == 1


def _resumed(caplog: pytest.LogCaptureFixture, names: set[str]) -> set[str]:
    """The invoices whose resume handlers (run on each operator start) this operator finished, from kopf's log."""
    return {getattr(r, "k8s_ref", {}).get("name") for r in caplog.records
            if r.getMessage().startswith("Resuming is processed") and getattr(r, "k8s_ref", {}).get("name") in names}


async def test_operator_restart_after_the_emails_sends_no_second_email(
    kube, fast: OperatorSettings, cluster: Cluster, stripe_standin: StripeStandin, smtp_sink: SmtpSink,
    namespace: str, caplog: pytest.LogCaptureFixture,
) -> None:
    """The ``sentAt`` guard: a restart reconciles every open invoice again, and must not email any a second time."""
    names = {"sent-1", "sent-2", "sent-3"}
    async with running_operator(fast):
        await connect(cluster, stripe_standin, namespace)
        for name in sorted(names):
            await cluster.create(INV, namespace, invoice_body(name))
        for name in names:
            await cluster.wait_condition(INV, namespace, name, "CustomerNotified", status="True")
        await smtp_sink.wait_for(3)
    before = {name: (await cluster.get(INV, namespace, name))["status"]["notification"] for name in names}
    assert all(n["sentAt"] for n in before.values())
    caplog.clear()
    async with running_operator(fast):
        await eventually(lambda: _resumed(caplog, names), lambda done: done == names)
        after = {name: (await cluster.get(INV, namespace, name))["status"] for name in names}
    assert {s["phase"] for s in after.values()} == {"Open"}
    assert {name: s["notification"] for name, s in after.items()} == before
    assert len(smtp_sink.messages) == 3
    assert len({m.message["Message-ID"] for m in smtp_sink.messages}) == 3


async def test_fifty_invoices_at_once_stay_under_the_rate_limit(
    operator, cluster: Cluster, stripe_standin: StripeStandin, smtp_sink: SmtpSink, namespace: str
) -> None:
    await connect(cluster, stripe_standin, namespace)
    await asyncio.gather(*(cluster.create(INV, namespace, invoice_body(f"bulk-{i}")) for i in range(50)))
    for i in range(50):
        await wait_phase(cluster, namespace, f"bulk-{i}", "Open", timeout=30)
    assert stripe_standin.rate_limited == 0
    assert stripe_standin.count_requests(status=429) == 0
    assert sum(stripe_standin.links_created_by_invoice.values()) == 50


async def test_stripe_rejection_fails_the_invoice_with_stripes_message(
    operator, cluster: Cluster, stripe_standin: StripeStandin, namespace: str
) -> None:
    await connect(cluster, stripe_standin, namespace)
    tiny = [{"description": "Sticker", "quantity": 1, "unitAmount": "0.10"}]
    await cluster.create(INV, namespace, invoice_body("tiny-1", lineItems=tiny))
    await wait_phase(cluster, namespace, "tiny-1", "Failed")
    ready = await cluster.condition(INV, namespace, "tiny-1", "Ready")
    assert ready["reason"] == "StripeRejected" and "at least" in ready["message"].lower()
    await asyncio.sleep(0.5)
    assert stripe_standin.count_requests(method="POST", path="/v1/payment_links") == 1


async def test_inactive_integration_holds_invoices_until_reactivated(
    operator, cluster: Cluster, stripe_standin: StripeStandin, namespace: str
) -> None:
    await connect(cluster, stripe_standin, namespace, active=False)
    await cluster.create(INV, namespace, invoice_body("held-1"))
    held = await cluster.wait_condition(INV, namespace, "held-1", "IntegrationReady", reason="IntegrationDisabled")
    assert held["status"] == "False"
    await asyncio.sleep(0.5)
    assert stripe_standin.count_requests(path="/v1/payment_links") == 0
    await cluster.patch(SI, namespace, "production-stripe", {"spec": {"active": True}})
    await wait_phase(cluster, namespace, "held-1", "Open")


async def test_missing_integration_is_a_condition_then_proceeds(
    operator, cluster: Cluster, stripe_standin: StripeStandin, namespace: str
) -> None:
    await cluster.create(INV, namespace, invoice_body("orphan-1"))
    waiting = await cluster.wait_condition(INV, namespace, "orphan-1", "Ready", reason="IntegrationNotFound")
    assert "production-stripe" in waiting["message"]
    await connect(cluster, stripe_standin, namespace)
    await wait_phase(cluster, namespace, "orphan-1", "Open")


async def test_void_before_payment_deactivates_the_link(
    operator, cluster: Cluster, stripe_standin: StripeStandin, namespace: str
) -> None:
    await connect(cluster, stripe_standin, namespace)
    await cluster.create(INV, namespace, invoice_body("void-1"))
    obj = await wait_phase(cluster, namespace, "void-1", "Open")
    await cluster.patch(INV, namespace, "void-1", {"spec": {"state": "Void"}})
    obj = await wait_phase(cluster, namespace, "void-1", "Void")
    assert obj["status"]["paymentLink"]["active"] is False
    assert stripe_standin.payment_links[obj["status"]["paymentLink"]["id"]].obj["active"] is False


async def test_paid_invoice_deactivates_its_link_and_is_never_downgraded(
    operator, cluster: Cluster, stripe_standin: StripeStandin, namespace: str
) -> None:
    await connect(cluster, stripe_standin, namespace)
    await cluster.create(INV, namespace, invoice_body("paid-1"))
    obj = await wait_phase(cluster, namespace, "paid-1", "Open")
    link_id = obj["status"]["paymentLink"]["id"]
    session = {"id": "cs_test_1", "amount_total": 23650, "currency": "usd", "payment_intent": "pi_1",
               "payment_status": "paid", "metadata": stripe_standin.payment_links[link_id].obj["metadata"]}
    report = report_from_object("checkout.session.completed", session, event_id="evt_test_1")
    decision, _ = await apply_report(cluster.kube, namespace, report, integration="production-stripe")
    assert decision.outcome == "applied"
    await eventually(lambda: stripe_standin.payment_links[link_id].obj["active"], lambda active: active is False)
    # A late write from anyone that would move it back is refused, and a re-reconcile keeps it Paid.
    with pytest.raises(ValueError, match="refusing"):
        await update_status(cluster.kube, namespace, "paid-1", lambda _: {"phase": "Open"})
    await cluster.patch(INV, namespace, "paid-1", {"spec": {"memo": "late edit"}})
    await asyncio.sleep(0.5)
    final = await cluster.get(INV, namespace, "paid-1")
    assert final["status"]["phase"] == "Paid" and final["status"]["payment"]["eventId"] == "evt_test_1"
    assert final["status"]["paymentLink"]["active"] is False


async def test_missed_webhook_is_found_by_reconciliation(
    kube, operator_settings: OperatorSettings, cluster: Cluster, stripe_standin: StripeStandin, namespace: str
) -> None:
    settings = dataclasses.replace(operator_settings, reconcile_interval=0.5)
    async with running_operator(settings):
        await connect(cluster, stripe_standin, namespace)
        await cluster.create(INV, namespace, invoice_body("missed-1"))
        obj = await wait_phase(cluster, namespace, "missed-1", "Open")
        payment = await stripe_standin.pay(obj["status"]["paymentLink"]["id"])  # no receiver is listening
        paid = await wait_phase(cluster, namespace, "missed-1", "Paid")
        await eventually(lambda: cluster.get(INV, namespace, "missed-1"),
                         lambda o: o["status"]["paymentLink"]["active"] is False)
    assert paid["status"]["payment"]["source"] == "reconciliation"
    assert paid["status"]["payment"]["amountMinor"] == 23650
    assert paid["status"]["payment"]["providerPaymentId"] == payment.payment_intent["id"]
    assert stripe_standin.payment_links[paid["status"]["paymentLink"]["id"]].obj["active"] is False


async def test_deleting_an_invoice_with_an_open_link_deactivates_it(
    operator, cluster: Cluster, stripe_standin: StripeStandin, namespace: str
) -> None:
    await connect(cluster, stripe_standin, namespace)
    await cluster.create(INV, namespace, invoice_body("gone-1"))
    obj = await wait_phase(cluster, namespace, "gone-1", "Open")
    await cluster.delete(INV, namespace, "gone-1")
    await eventually(lambda: cluster.get(INV, namespace, "gone-1"), lambda o: o is None)
    assert stripe_standin.payment_links[obj["status"]["paymentLink"]["id"]].obj["active"] is False


async def test_smtp_failure_retries_without_holding_up_payment(
    kube, fast: OperatorSettings, cluster: Cluster, stripe_standin: StripeStandin, smtp_sink: SmtpSink,
    namespace: str,
) -> None:
    smtp_sink.fail_next(2)
    async with running_operator(fast):
        await connect(cluster, stripe_standin, namespace)
        await cluster.create(INV, namespace, invoice_body("mail-1"))
        failed = await cluster.wait_condition(INV, namespace, "mail-1", "CustomerNotified", reason="SmtpFailed")
        assert (await cluster.get(INV, namespace, "mail-1"))["status"]["phase"] == "Open"
        assert "451" in failed["message"]
        await cluster.wait_condition(INV, namespace, "mail-1", "CustomerNotified", status="True", timeout=20)
    assert len(smtp_sink.messages) == 1


async def test_without_smtp_the_condition_says_so(
    kube, operator_settings: OperatorSettings, cluster: Cluster, stripe_standin: StripeStandin, namespace: str
) -> None:
    settings = dataclasses.replace(operator_settings, smtp=SmtpSettings())
    async with running_operator(settings):
        await connect(cluster, stripe_standin, namespace)
        await cluster.create(INV, namespace, invoice_body("nomail-1"))
        obj = await wait_phase(cluster, namespace, "nomail-1", "Open")
        notified = await cluster.wait_condition(INV, namespace, "nomail-1", "CustomerNotified",
                                                reason="SmtpNotConfigured")
    assert obj["status"]["paymentLink"]["url"] in notified["message"]


async def test_changed_link_settings_between_attempts_adopt_the_first_link(
    operator, cluster: Cluster, stripe_standin: StripeStandin, smtp_sink: SmtpSink, namespace: str
) -> None:
    """A link created by an attempt whose status write was lost, then the integration's settings changed."""
    from fluxrate.models import AfterCompletion, InvoiceSpec
    from fluxrate.operator.payment_links import build_payment_link_params, payment_link_idempotency_key
    from fluxrate.stripe_api import build_stripe_client, close_stripe_client

    _, key = await connect(cluster, stripe_standin, namespace, active=False)
    body = invoice_body("adopt-1")
    created = await cluster.create(INV, namespace, body)
    uid = created["metadata"]["uid"]
    client = build_stripe_client(key, api_base=stripe_standin.url, max_network_retries=0)
    try:  # what the lost first attempt sent, with the settings of that time
        params = build_payment_link_params(namespace, "adopt-1", uid, InvoiceSpec.model_validate(body["spec"]),
                                           AfterCompletion(message="old message"))
        first = await client.v1.payment_links.create_async(
            params=params, options={"idempotency_key": payment_link_idempotency_key(uid)})
    finally:
        await close_stripe_client(client)
    await cluster.patch(SI, namespace, "production-stripe", {"spec": {"active": True}})
    obj = await wait_phase(cluster, namespace, "adopt-1", "Open")
    assert obj["status"]["paymentLink"]["id"] == first.id
    assert len(links_for(stripe_standin, uid)) == 1
    await smtp_sink.wait_for(1)


async def test_three_decimal_currency_link_is_in_thousandths(
    operator, cluster: Cluster, stripe_standin: StripeStandin, namespace: str
) -> None:
    await connect(cluster, stripe_standin, namespace)
    lines = [{"description": "Hosting", "quantity": 2, "unitAmount": "12.340"}]
    body = invoice_body("kwd-1")
    body["spec"].update(currency="KWD", lineItems=lines)
    await cluster.create(INV, namespace, body)
    obj = await wait_phase(cluster, namespace, "kwd-1", "Open")
    (stored,) = links_for(stripe_standin, obj["metadata"]["uid"])
    assert [(li["price"]["unit_amount"], li["quantity"]) for li in stored.line_items] == [(12340, 2)]
    assert obj["status"]["amountDue"]["display"] == "24.680 KWD"
