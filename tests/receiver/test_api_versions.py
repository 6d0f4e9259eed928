"""API versions over HTTP: a hand-made endpoint of each version, events rendered by the stand-in in that version,
a link that creates an invoice (``invoice_creation``), and what the receiver records and answers."""

from __future__ import annotations

from typing import Any

import pytest

from fluxrate import api_versions
from fluxrate_sandbox.stripe_standin import StripeStandin

from ..conftest import eventually
from .conftest import ALL_EVENTS, Bench

PRE_BASIL, BASIL, SDK = "2024-06-20", "2025-03-31.basil", api_versions.SDK_VERSION


async def _versioned_endpoint(bench: Bench, version: str) -> str:
    """The bench's hand-made endpoint, set to ``version`` and subscribed to invoice_payment.paid as well."""
    endpoint_id = await bench.integration()
    bench.standin.tamper_endpoint(endpoint_id, api_version=version,
                                  enabled_events=[*ALL_EVENTS, "invoice_payment.paid"])
    return endpoint_id


async def _invoicing_link(bench: Bench, name: str) -> dict[str, Any]:
    """A fluxrate link that also creates a Stripe invoice carrying fluxrate's metadata."""
    _, link = await bench.invoice(name)
    updated = await bench.stripe.client.v1.payment_links.update_async(link["id"], params={
        "invoice_creation": {"enabled": True, "invoice_data": {"metadata": dict(link["metadata"])}}})
    return updated.to_dict()


async def _integration_status(bench: Bench, check: Any) -> dict[str, Any]:
    async def status() -> dict[str, Any]:
        await bench.flush()
        return (await bench.get("stripeintegrations", "stripe")).get("status") or {}
    return await eventually(status, check, timeout=10)


@pytest.mark.parametrize("version", [PRE_BASIL, BASIL, SDK])
async def test_each_version_pays_once_by_the_payment_intent(
    bench: Bench, stripe_standin: StripeStandin, version: str
) -> None:
    await _versioned_endpoint(bench, version)
    link = await _invoicing_link(bench, "inv-1")
    result = await stripe_standin.pay(link["id"], method="card")
    await result.delivered
    types = [e["type"] for e in result.events]
    assert {"invoice.payment_succeeded", "invoice_payment.paid"} <= set(types)
    attempts = [a for a in stripe_standin.delivery_log if a.event_id in {e["id"] for e in result.events}]
    assert attempts and all(a.status == 200 for a in attempts)

    status = await eventually(lambda: bench.invoice_status("inv-1"), lambda s: s.get("phase") == "Paid")
    assert status["payment"]["providerPaymentId"] == result.payment_intent["id"]
    await bench.running.receiver.events.drain()
    reasons = [e.reason for e in (await bench.kube.core.list_namespaced_event(bench.namespace)).items]
    assert "SecondPayment" not in reasons and reasons.count("Paid") == 1, reasons

    integration = await _integration_status(
        bench, lambda s: sum(((s.get("deliveries") or {}).get("counts") or {}).values()) >= len(types))
    deliveries = integration["deliveries"]
    assert {r.get("apiVersion") for r in deliveries["recent"]} == {version}
    assert deliveries["apiVersions"] == [{"apiVersion": version, "readable": True, "count": len(types),
                                          "lastSeen": deliveries["apiVersions"][0]["lastSeen"]}]
    (condition,) = [c for c in integration["conditions"] if c["type"] == "WebhookApiVersion"]
    assert (condition["status"], condition["reason"]) == ("True", "Readable") and version in condition["message"]


async def test_the_stand_in_renders_the_invoice_in_the_endpoints_version(stripe_standin: StripeStandin) -> None:
    invoice = {"id": "in_1", "object": "invoice", "status": "paid", "parent": None, "metadata": {}}
    stripe_standin.versions.invoice_payment_intents["in_1"] = "pi_1"
    event = {"id": "evt_1", "api_version": SDK, "data": {"object": invoice}, "type": "invoice.payment_succeeded"}
    old = stripe_standin.versions.render(event, PRE_BASIL)
    assert old["api_version"] == PRE_BASIL
    assert old["data"]["object"]["payment_intent"] == "pi_1" and old["data"]["object"]["paid"] is True
    assert "parent" not in old["data"]["object"]
    for version in (BASIL, SDK, None):
        new = stripe_standin.versions.render(event, version)
        assert new["api_version"] == (version or SDK) and "payment_intent" not in new["data"]["object"]


async def test_an_unreadable_version_is_answered_503_and_named_in_a_condition(
    bench: Bench, stripe_standin: StripeStandin
) -> None:
    await _versioned_endpoint(bench, "2019-12-03")
    _, link = await bench.invoice("inv-1")
    result = await stripe_standin.pay(link["id"], method="card")
    first = await eventually(lambda: stripe_standin.delivery_log, lambda log: len(log) >= 2)
    assert {a.status for a in first} == {503}  # Stripe keeps the events and redelivers them
    assert (await bench.invoice_status("inv-1"))["phase"] == "Open"

    integration = await _integration_status(
        bench, lambda s: any(c["type"] == "WebhookApiVersion" for c in s.get("conditions") or []))
    (condition,) = [c for c in integration["conditions"] if c["type"] == "WebhookApiVersion"]
    assert (condition["status"], condition["reason"]) == ("False", "UnreadableApiVersion")
    assert "2019-12-03" in condition["message"] and f"--api-version {SDK}" in condition["message"]
    assert "managed: true" in condition["message"]
    assert integration["deliveries"]["apiVersions"][0]["readable"] is False
    recent = integration["deliveries"]["recent"][0]
    assert recent["outcome"] == "error" and "2019-12-03" in recent["reason"]
    result.delivered.cancel()


async def test_an_unreadable_version_of_an_event_fluxrate_ignores_is_just_ignored(bench: Bench) -> None:
    await bench.integration()
    event = {**bench.event("customer.created", {"id": "cus_1", "object": "customer"}), "api_version": "2017-08-15"}
    status, body = await bench.send(event)
    assert (status, body["outcome"]) == (200, "ignored")
