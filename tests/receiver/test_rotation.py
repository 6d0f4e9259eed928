"""Point 3 of the issue: cached secrets, and a rotated signing secret that verifies on its first delivery."""

from __future__ import annotations

import pytest

from fluxrate.webhook_receiver.settings import ReceiverSettings

from ..conftest import eventually
from .conftest import Bench, receiver_settings


async def test_rotated_secret_verifies_on_first_delivery_and_the_old_one_during_the_overlap(bench: Bench) -> None:
    endpoint_id = await bench.integration()
    key = f"{bench.namespace}/stripe"
    old = bench.secrets[key]
    _, link_a = await bench.invoice("inv-a")
    _, link_b = await bench.invoice("inv-b")
    warm = bench.event("customer.created", {"id": "cus_1", "object": "customer"})
    assert (await bench.send(warm))[0] == 200  # the receiver now caches the old secret (TTL 300 s)

    # Roll in Stripe; the user saves both secrets (one per line) for the overlap; Stripe signs with the new one only.
    new = bench.standin.roll_endpoint_secret(endpoint_id)
    bench.standin.expire_old_secrets(endpoint_id)
    await bench.apply_secret("stripe-webhook", {"signing-secret": f"{new}\n{old}\n"})

    result = await bench.standin.pay(link_a["id"])
    await result.delivered
    attempts = [a for a in bench.standin.delivery_log if a.event_id in {e["id"] for e in result.events}]
    assert attempts and all(a.status == 200 and a.attempt == 1 for a in attempts)
    assert (await bench.invoice_status("inv-a"))["phase"] == "Paid"

    event = bench.event("checkout.session.completed", {
        "id": "cs_b", "object": "checkout.session", "amount_total": 23650, "currency": "usd", "livemode": False,
        "metadata": link_b["metadata"], "payment_intent": "pi_b", "payment_status": "paid"})
    code, answer = await bench.send(event, secret=old)
    assert (code, answer["outcome"]) == (200, "applied")


@pytest.mark.parametrize("settings", [receiver_settings(secret_cache_ttl=0.3)])
async def test_a_removed_secret_stops_verifying_within_the_cache_ttl(bench: Bench, settings: ReceiverSettings) -> None:
    endpoint_id = await bench.integration()
    old = bench.secrets[f"{bench.namespace}/stripe"]
    new = bench.standin.roll_endpoint_secret(endpoint_id)
    await bench.apply_secret("stripe-webhook", {"signing-secret": f"{new}\n{old}"})
    event = bench.event("customer.created", {"id": "cus_1", "object": "customer"})
    assert (await bench.send(event, secret=old))[0] == 200
    # After the overlap the user removes the old secret.
    await bench.apply_secret("stripe-webhook", {"signing-secret": new})
    await eventually(lambda: bench.send(event, secret=old), lambda answer: answer[0] == 400, timeout=5)
    assert (await bench.send(event, secret=new))[0] == 200


async def test_signature_misses_do_not_turn_into_a_kubernetes_read_each(bench: Bench) -> None:
    await bench.integration()
    warm = bench.event("customer.created", {"id": "cus_1", "object": "customer"})
    assert (await bench.send(warm))[0] == 200
    log = bench.sandbox.emulator.request_log
    before = len(log)
    for _ in range(40):
        assert (await bench.send(warm, secret="whsec_attackerattackerattacker00"))[0] == 400
    reads = [p for m, p, _ in list(log)[before:] if m == "GET" and "/stripeintegrations/" in p]
    assert 1 <= len(reads) <= 12  # the forced-refresh budget (burst 10, then 1/s), not one per request


async def test_managed_endpoint_secret_is_read_from_the_secret_named_in_status(bench: Bench) -> None:
    endpoint = await bench.stripe.client.v1.webhook_endpoints.create_async(params={
        "url": bench.running.webhook_url(bench.namespace, "managed"), "enabled_events": ["*"]})
    await bench.apply_secret("stripe-credentials", {"secret-key": bench.stripe.key})
    await bench.apply_secret("managed-webhook-signing", {"signing-secret": endpoint["secret"]})
    await bench.create("stripeintegrations", {
        "kind": "StripeIntegration", "metadata": {"name": "managed"},
        "spec": {"secretKeyRef": {"name": "stripe-credentials", "key": "secret-key"},
                 "webhookEndpoint": {"managed": True}}})
    event = bench.event("customer.created", {"id": "cus_1", "object": "customer"})
    # Before the operator recorded the Secret's name, no secret is known.
    code, answer = await bench.send(event, integration="managed", secret=endpoint["secret"])
    assert (code, answer["outcome"]) == (400, "signature_failed")
    await bench.kube.patch_status("stripeintegrations", bench.namespace, "managed",
                                  {"mode": "test", "webhookSecretName": "managed-webhook-signing"})
    code, answer = await bench.send(event, integration="managed", secret=endpoint["secret"])
    assert (code, answer["outcome"]) == (200, "ignored")
