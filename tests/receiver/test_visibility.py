"""Point 7 of the issue: every delivery's outcome shows in the integration's status, Events, metrics and logs,
and no signing secret shows anywhere."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from fluxrate import conditions as cond
from fluxrate.webhook_receiver.logs import DELIVERY_LOGGER
from fluxrate.webhook_receiver.runner import running_receiver
from fluxrate.webhook_receiver.settings import ReceiverSettings

from ..conftest import eventually
from .conftest import Bench, receiver_settings

SLOW_FLUSH = receiver_settings(status_flush_interval=3600.0)


async def _every_outcome(bench: Bench) -> dict[str, Any]:
    """Deliveries with every outcome; returns what was sent, by outcome."""
    _, link = await bench.invoice("inv-1")
    _, link_err = await bench.invoice("inv-err")
    paid = bench.event("payment_intent.succeeded", {
        "id": "pi_1", "object": "payment_intent", "amount": 23650, "amount_received": 23650, "currency": "usd",
        "livemode": False, "metadata": link["metadata"]})
    broken = bench.event("payment_intent.succeeded", {
        "id": "pi_2", "object": "payment_intent", "amount": 23650, "amount_received": 23650, "currency": "usd",
        "livemode": False, "metadata": link_err["metadata"]})
    other = bench.event("customer.created", {"id": "cus_1", "object": "customer"})
    foreign = bench.event("payment_intent.succeeded", {"id": "pi_3", "object": "payment_intent", "amount": 5,
                                                       "currency": "usd", "metadata": {}})
    answers = [await bench.send(paid), await bench.send(paid), await bench.send(other), await bench.send(foreign),
               await bench.send(other, secret="whsec_notthesecretnotthesecret00"),
               await bench.send(other, secret="whsec_notthesecretnotthesecret00")]
    bench.sandbox.faults.fail_always(503, verb="patch", resource="invoices", subresource="status", name="inv-err")
    answers.append(await bench.send(broken))
    bench.sandbox.faults.clear()
    assert [a[1]["outcome"] for a in answers] == [
        "applied", "duplicate", "ignored", "unmatched", "signature_failed", "signature_failed", "error"]
    return {"paid": paid, "broken": broken, "answers": answers}


async def test_counts_and_recent_deliveries_appear_in_the_integration_status(bench: Bench) -> None:
    await bench.integration()
    operator_condition = {"type": "Ready", "status": "True", "reason": "Connected", "message": "ok",
                          "lastTransitionTime": cond.timestamp()}
    await bench.kube.patch_status("stripeintegrations", bench.namespace, "stripe", {"conditions": [operator_condition]})
    sent = await _every_outcome(bench)
    status = await eventually(lambda: bench.get("stripeintegrations", "stripe"),
                              lambda obj: sum((obj["status"].get("deliveries") or {}).get("counts", {}).values()) == 7)
    deliveries = status["status"]["deliveries"]
    assert deliveries["counts"] == {"applied": 1, "duplicate": 1, "ignored": 1, "unmatched": 1,
                                    "signature_failed": 2, "error": 1}
    recent = deliveries["recent"]
    assert [r["outcome"] for r in recent] == [
        "error", "signature_failed", "signature_failed", "unmatched", "ignored", "duplicate", "applied"]
    assert recent[-1] == {"eventId": sent["paid"]["id"], "type": "payment_intent.succeeded", "outcome": "applied",
                          "invoice": "inv-1", "apiVersion": sent["paid"]["api_version"], "time": recent[-1]["time"]}
    assert recent[0]["eventId"] == sent["broken"]["id"] and "Kubernetes" in recent[0]["reason"]
    assert "didn't match" in recent[1]["reason"]
    assert deliveries["lastDeliveryTime"] >= recent[-1]["time"]
    # the operator's, untouched; the receiver adds only WebhookApiVersion
    operators, version = status["status"]["conditions"]
    assert operators == operator_condition
    assert (version["type"], version["status"], version["reason"]) == ("WebhookApiVersion", "True", "Readable")


@pytest.mark.parametrize("settings", [SLOW_FLUSH])
async def test_status_writes_are_coalesced_and_replicas_add_up(bench: Bench, settings: ReceiverSettings) -> None:
    await bench.integration()
    other = bench.event("customer.created", {"id": "cus_1", "object": "customer"})
    log = bench.sandbox.emulator.request_log
    before = len(log)
    for _ in range(15):
        await bench.send(other)
    async with running_receiver(settings) as second:
        for _ in range(5):
            async with bench.http.post(second.webhook_url(bench.namespace, "stripe"), data=json.dumps(other),
                                       headers={"Stripe-Signature": bench.sign(
                                           json.dumps(other), bench.secrets[f"{bench.namespace}/stripe"])}) as resp:
                assert resp.status == 200
    await bench.flush()
    writes = [p for m, p, _ in list(log)[before:] if m == "PATCH" and "/stripeintegrations/" in p]
    assert len(writes) == 2  # one per replica, for 20 deliveries
    counts = (await bench.get("stripeintegrations", "stripe"))["status"]["deliveries"]["counts"]
    assert counts["ignored"] == 20


async def test_events_on_the_invoice_and_rate_limited_signature_warnings_on_the_integration(bench: Bench) -> None:
    await bench.integration()
    await _every_outcome(bench)
    await bench.running.receiver.events.drain()
    events = (await bench.kube.core.list_namespaced_event(bench.namespace)).items
    on_invoice = [(e.type, e.reason) for e in events if e.involved_object.name == "inv-1"]
    assert ("Normal", "Paid") in on_invoice and ("Normal", "WebhookDelivery") in on_invoice
    signature = [e for e in events if e.involved_object.kind == "StripeIntegration"
                 and e.reason == "WebhookSignatureFailed"]
    assert len(signature) == 1  # two failures, one Event per minute
    assert signature[0].type == "Warning" and "whsec_" in signature[0].message


async def test_metrics_count_outcomes_by_type(bench: Bench) -> None:
    await bench.integration()
    await _every_outcome(bench)
    async with bench.http.get(f"{bench.running.url}/metrics") as resp:
        text = await resp.text()
    expected = [
        'fluxrate_receiver_deliveries_total{outcome="applied",type="payment_intent.succeeded"} 1.0',
        'fluxrate_receiver_deliveries_total{outcome="duplicate",type="payment_intent.succeeded"} 1.0',
        'fluxrate_receiver_deliveries_total{outcome="ignored",type="other"} 1.0',
        'fluxrate_receiver_deliveries_total{outcome="unmatched",type="payment_intent.succeeded"} 1.0',
        'fluxrate_receiver_deliveries_total{outcome="signature_failed",type="unknown"} 2.0',
        'fluxrate_receiver_deliveries_total{outcome="error",type="payment_intent.succeeded"} 1.0',
        'fluxrate_receiver_delivery_duration_seconds_count{outcome="applied"} 1.0',
    ]
    for line in expected:
        assert line in text


async def test_one_structured_log_line_per_delivery(bench: Bench, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=DELIVERY_LOGGER)
    await bench.integration()
    await _every_outcome(bench)
    lines = [json.loads(r.getMessage().removeprefix("delivery ")) for r in caplog.records if r.name == DELIVERY_LOGGER]
    assert [line["outcome"] for line in lines] == [
        "applied", "duplicate", "ignored", "unmatched", "signature_failed", "signature_failed", "error"]
    allowed = {"namespace", "integration", "eventId", "type", "outcome", "status", "invoice", "reason", "bytes",
               "durationMs", "apiVersion"}
    assert all({"namespace", "integration", "status", "durationMs"} <= set(line) <= allowed for line in lines)
    assert all("pi_1" not in json.dumps(line) for line in lines)  # nothing from the payload's object


async def test_no_signing_secret_in_answers_logs_events_status_or_metrics(
    bench: Bench, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    endpoint_id = await bench.integration()
    sent = await _every_outcome(bench)
    # a rotation too, and a secret pasted where it does not belong (an API key in the signing secret field)
    old = bench.secrets[f"{bench.namespace}/stripe"]
    new = bench.standin.roll_endpoint_secret(endpoint_id)
    await bench.apply_secret("stripe-webhook", {"signing-secret": f"{new}\n{old}"})
    _, link = await bench.invoice("inv-2")
    await (await bench.standin.pay(link["id"])).delivered
    await bench.apply_secret("stripe-webhook", {"signing-secret": bench.stripe.key})
    bench.running.receiver.cache.invalidate(bench.namespace, "stripe")
    bad = await bench.send(bench.event("customer.created", {"id": "cus_9", "object": "customer"}), secret=new)
    assert bad[0] == 400
    await bench.flush()
    await bench.running.receiver.events.drain()

    async with bench.http.get(f"{bench.running.url}/metrics") as resp:
        metrics = await resp.text()
    events = (await bench.kube.core.list_namespaced_event(bench.namespace)).items
    objects = [await bench.get("stripeintegrations", "stripe")]
    objects += [await bench.get("invoices", name) for name in ("inv-1", "inv-err", "inv-2")]
    haystack = "\n".join([
        json.dumps([*sent["answers"], bad]), caplog.text, metrics, json.dumps(objects),
        "\n".join(f"{e.reason} {e.message}" for e in events),
    ])
    secrets = [old, new, bench.stripe.key]
    for secret in secrets:
        assert secret not in haystack
        assert secret.split("_", 1)[1][-12:] not in haystack
