"""StripeIntegration, with the kopf operator running in-process on the sandbox."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from fluxrate import api_versions
from fluxrate import conditions as cond
from fluxrate.kube import decode_secret_data
from fluxrate.models import DEFAULT_ENABLED_EVENTS
from fluxrate.operator.main import running_operator
from fluxrate.stripe_api import build_stripe_client, close_stripe_client
from fluxrate_sandbox.stripe_standin import StripeStandin

from ..conftest import eventually
from .conftest import PUBLIC_BASE_URL, Cluster

SI = "stripeintegrations"


def integration(name: str = "prod", *, secret: str = "stripe", managed: bool = False, **spec: Any) -> dict[str, Any]:
    return {
        "kind": "StripeIntegration",
        "metadata": {"name": name},
        "spec": {"secretKeyRef": {"name": secret, "key": "secret-key"},
                 "webhookEndpoint": {"managed": managed}, **spec},
    }


async def test_valid_test_key_connects(operator, cluster: Cluster, stripe_standin: StripeStandin, namespace) -> None:
    account_id, key = stripe_standin.add_account()
    await cluster.apply_secret(namespace, "stripe", {"secret-key": key})
    await cluster.create(SI, namespace, integration())
    ready = await cluster.wait_condition(SI, namespace, "prod", "Ready", status="True")
    obj = await cluster.get(SI, namespace, "prod")
    assert ready["reason"] == "Connected"
    assert obj["status"]["mode"] == "test"
    assert obj["status"]["accountId"] == account_id
    assert obj["status"]["webhookURL"] == f"{PUBLIC_BASE_URL}/api/v1/webhooks/stripe/{namespace}/prod"
    waiting = await cluster.condition(SI, namespace, "prod", "WebhookSecretConfigured")
    assert waiting["status"] == "False" and waiting["reason"] == "WaitingForWebhookSecret"
    assert obj["status"]["webhookURL"] in waiting["message"]


async def connected(cluster: Cluster, standin: StripeStandin, namespace: str, name: str = "prod",
                    **spec: Any) -> tuple[str, str]:
    account_id, key = standin.add_account()
    await cluster.apply_secret(namespace, "stripe", {"secret-key": key})
    await cluster.create(SI, namespace, integration(name, **spec))
    await cluster.wait_condition(SI, namespace, name, "Ready", status="True")
    return account_id, key


@pytest.mark.parametrize(
    ("secret_data", "reason", "hint"),
    [
        (None, "SecretNotFound", 'Secret "stripe" not found'),
        ({"other-key": "sk_test_abcdefgh12345678"}, "SecretKeyNotFound", 'has no key "secret-key"'),
        ({"secret-key": "pk_test_abcdefgh12345678"}, "PublishableKey", "publishable key"),
        ({"secret-key": "sk_test_unknownunknown12345"}, "InvalidSecretKey", "Stripe rejected the key"),
    ],
    ids=["missing-secret", "missing-key", "publishable-key", "unknown-key"],
)
async def test_unusable_keys_give_distinct_reasons(
    operator, cluster: Cluster, namespace: str, secret_data: dict[str, str] | None, reason: str, hint: str
) -> None:
    if secret_data is not None:
        await cluster.apply_secret(namespace, "stripe", secret_data)
    await cluster.create(SI, namespace, integration())
    ready = await cluster.wait_condition(SI, namespace, "prod", "Ready", reason=reason)
    assert ready["status"] == "False"
    assert hint in ready["message"]
    stalled = await cluster.condition(SI, namespace, "prod", "Stalled")
    assert stalled and stalled["status"] == "True"


async def test_revoked_key_flips_ready_without_retry_storm(
    operator, cluster: Cluster, stripe_standin: StripeStandin, namespace: str
) -> None:
    _, key = await connected(cluster, stripe_standin, namespace)
    stripe_standin.revoke_key(key)
    await cluster.patch(SI, namespace, "prod", {"spec": {"displayName": "poke"}})
    await cluster.wait_condition(SI, namespace, "prod", "Ready", reason="InvalidSecretKey")
    before = stripe_standin.count_requests(path="/v1/account")
    await asyncio.sleep(1.5)
    assert stripe_standin.count_requests(path="/v1/account") == before
    events = await cluster.events(namespace, "prod")
    assert any(e["reason"] == "InvalidKey" and e["type"] == "Warning" for e in events)


async def test_stripe_outage_gives_unknown_then_recovers(
    kube, operator_settings, cluster: Cluster, stripe_standin: StripeStandin, namespace: str
) -> None:
    account_id, key = stripe_standin.add_account()
    await cluster.apply_secret(namespace, "stripe", {"secret-key": key})
    stripe_standin.set_faults(error_rate=1.0)
    settings = dataclasses.replace(operator_settings, stripe_max_network_retries=0, retry_delay=0.5)
    async with running_operator(settings):
        await cluster.create(SI, namespace, integration())
        ready = await cluster.wait_condition(SI, namespace, "prod", "Ready", reason="StripeUnavailable")
        assert ready["status"] == "Unknown"
        assert (await cluster.condition(SI, namespace, "prod", "Reconciling"))["status"] == "True"
        stripe_standin.reset_faults()
        await cluster.wait_condition(SI, namespace, "prod", "Ready", status="True")
    assert (await cluster.get(SI, namespace, "prod"))["status"]["accountId"] == account_id


async def test_secret_rotation_is_picked_up_within_seconds(
    operator, cluster: Cluster, stripe_standin: StripeStandin, namespace: str
) -> None:
    account_id, old_key = await connected(cluster, stripe_standin, namespace)
    new_key = stripe_standin.add_key(account_id)
    await cluster.apply_secret(namespace, "stripe", {"secret-key": new_key})
    await eventually(lambda: cluster.events(namespace, "prod"),
                     lambda events: any(e["reason"] == "KeyRotated" for e in events), timeout=10)
    stripe_standin.revoke_key(old_key)
    assert (await cluster.condition(SI, namespace, "prod", "Ready"))["status"] == "True"


async def test_key_of_another_account_is_not_switched_to_silently(
    operator, cluster: Cluster, stripe_standin: StripeStandin, namespace: str
) -> None:
    account_id, _ = await connected(cluster, stripe_standin, namespace)
    other_account, other_key = stripe_standin.add_account()
    await cluster.apply_secret(namespace, "stripe", {"secret-key": other_key})
    ready = await cluster.wait_condition(SI, namespace, "prod", "Ready", reason="AccountChanged", timeout=10)
    assert other_account in ready["message"] and account_id in ready["message"]
    assert (await cluster.get(SI, namespace, "prod"))["status"]["accountId"] == account_id
    await cluster.patch(SI, namespace, "prod",
                        {"metadata": {"annotations": {"billing.fluxrate.co/accept-account": other_account}}})
    await cluster.wait_condition(SI, namespace, "prod", "Ready", status="True")
    assert (await cluster.get(SI, namespace, "prod"))["status"]["accountId"] == other_account


async def test_webhook_secret_reference_is_checked(
    operator, cluster: Cluster, stripe_standin: StripeStandin, namespace: str
) -> None:
    await connected(cluster, stripe_standin, namespace,
                    webhookSecretRef={"name": "stripe-webhook", "key": "signing-secret"})
    found = await cluster.wait_condition(
        SI, namespace, "prod", "WebhookSecretConfigured", reason="WebhookSecretNotFound"
    )
    assert found["status"] == "False"
    await cluster.apply_secret(namespace, "stripe-webhook", {"signing-secret": "https://not-a-secret.example"})
    bad = await cluster.wait_condition(SI, namespace, "prod", "WebhookSecretConfigured", reason="InvalidWebhookSecret")
    assert "endpoint URL" in bad["message"]
    await cluster.apply_secret(namespace, "stripe-webhook",
                               {"signing-secret": "whsec_oldoldoldoldold\nwhsec_newnewnewnewnew"})
    ok = await cluster.wait_condition(SI, namespace, "prod", "WebhookSecretConfigured", status="True")
    assert "2 signing secrets" in ok["message"]


async def test_disabled_integration_is_not_ready(
    operator, cluster: Cluster, stripe_standin: StripeStandin, namespace: str
) -> None:
    await connected(cluster, stripe_standin, namespace)
    await cluster.patch(SI, namespace, "prod", {"spec": {"active": False}})
    ready = await cluster.wait_condition(SI, namespace, "prod", "Ready", reason="Disabled")
    assert ready["status"] == "False" and "still recorded" in ready["message"]
    await cluster.patch(SI, namespace, "prod", {"spec": {"active": True}})
    await cluster.wait_condition(SI, namespace, "prod", "Ready", status="True")


def _endpoints(standin: StripeStandin, account_id: str) -> list[Any]:
    return [e for e in standin.webhook_endpoints.values() if e.account_id == account_id]


async def test_managed_endpoint_lifecycle(
    kube, operator_settings, cluster: Cluster, stripe_standin: StripeStandin, namespace: str
) -> None:
    settings = dataclasses.replace(operator_settings, resync_interval=0.5)
    async with running_operator(settings):
        account_id, _ = await connected(cluster, stripe_standin, namespace, managed=True)
        obj = await cluster.get(SI, namespace, "prod")
        (endpoint,) = _endpoints(stripe_standin, account_id)
        assert obj["status"]["webhookEndpointId"] == endpoint.id
        assert endpoint.url == obj["status"]["webhookURL"]
        assert sorted(endpoint.enabled_events) == sorted(DEFAULT_ENABLED_EVENTS)
        secret = await cluster.kube.core.read_namespaced_secret(obj["status"]["webhookSecretName"], namespace)
        assert secret.metadata.owner_references[0].uid == obj["metadata"]["uid"]
        assert decode_secret_data(secret)["signing-secret"] in endpoint.secrets
        configured = await cluster.condition(SI, namespace, "prod", "WebhookSecretConfigured")
        assert configured["reason"] == "ManagedEndpoint"

        stripe_standin.tamper_endpoint(endpoint.id, enabled_events=["charge.succeeded"])
        await eventually(lambda: sorted(stripe_standin.webhook_endpoints[endpoint.id].enabled_events),
                         lambda events: events == sorted(DEFAULT_ENABLED_EVENTS))

        stripe_standin.delete_endpoint(endpoint.id)
        replacement = await eventually(lambda: _endpoints(stripe_standin, account_id), lambda found: len(found) == 1
                                       and found[0].id != endpoint.id)
        await eventually(lambda: cluster.get(SI, namespace, "prod"),
                         lambda o: o["status"].get("webhookEndpointId") == replacement[0].id)
        reasons = {e["reason"] for e in await cluster.events(namespace, "prod")}
        assert {"Connected", "EndpointRegistered", "EndpointRepaired"} <= reasons

        await cluster.delete(SI, namespace, "prod")
        await eventually(lambda: cluster.get(SI, namespace, "prod"), lambda o: o is None)
        assert _endpoints(stripe_standin, account_id) == []
        # kopf posts Events from a queue: the last may land after the object is gone
        await eventually(lambda: cluster.events(namespace, "prod"),
                         lambda events: any(e["reason"] == "Disconnected" for e in events))


async def test_disconnect_deletes_the_endpoint_with_the_key_in_the_secret_now(
    operator, cluster: Cluster, stripe_standin: StripeStandin, namespace: str
) -> None:
    """The key rotated without this operator noticing (an unlabelled Secret between resyncs; on the real server, an
    HA standby that took over with a client of the old key), then the old key revoked: deleting the integration
    still deletes its managed endpoint in Stripe instead of leaving it behind."""
    account_id, old_key = stripe_standin.add_account()
    await cluster.apply_secret(namespace, "stripe", {"secret-key": old_key}, labelled=False)
    await cluster.create(SI, namespace, integration(managed=True))
    await eventually(lambda: cluster.get(SI, namespace, "prod"),
                     lambda o: bool((o.get("status") or {}).get("webhookEndpointId")))
    new_key = stripe_standin.add_key(account_id)
    await cluster.apply_secret(namespace, "stripe", {"secret-key": new_key}, labelled=False)
    stripe_standin.revoke_key(old_key)

    await cluster.delete(SI, namespace, "prod")
    await eventually(lambda: cluster.get(SI, namespace, "prod"), lambda o: o is None)
    assert _endpoints(stripe_standin, account_id) == []
    reasons = await eventually(lambda: cluster.events(namespace, "prod"),
                               lambda events: "Disconnected" in {e["reason"] for e in events})
    assert "EndpointDeleted" in {e["reason"] for e in reasons}
    assert "EndpointNotDeleted" not in {e["reason"] for e in reasons}


async def test_endpoint_limit_gives_a_clear_condition(
    operator, cluster: Cluster, stripe_standin: StripeStandin, namespace: str
) -> None:
    _account_id, key = stripe_standin.add_account()
    client = build_stripe_client(key, api_base=stripe_standin.url, max_network_retries=0)
    try:
        for index in range(16):
            await client.v1.webhook_endpoints.create_async(
                params={"url": f"https://elsewhere.example/{index}", "enabled_events": ["*"]})
    finally:
        await close_stripe_client(client)
    await cluster.apply_secret(namespace, "stripe", {"secret-key": key})
    await cluster.create(SI, namespace, integration(managed=True))
    ready = await cluster.wait_condition(SI, namespace, "prod", "Ready", reason="EndpointLimitReached")
    assert "16" in ready["message"] and "managed: false" in ready["message"]


async def test_deleting_an_integration_touches_nothing_else_in_stripe(
    operator, cluster: Cluster, stripe_standin: StripeStandin, namespace: str
) -> None:
    _account_id, _ = await connected(cluster, stripe_standin, namespace)
    posts_before = stripe_standin.count_requests(method="POST") + stripe_standin.count_requests(method="DELETE")
    await cluster.delete(SI, namespace, "prod")
    await eventually(lambda: cluster.get(SI, namespace, "prod"), lambda o: o is None)
    assert stripe_standin.count_requests(method="POST") + stripe_standin.count_requests(method="DELETE") == posts_before


async def test_namespaced_operator_serves_only_its_namespaces(
    kube, operator_settings, cluster: Cluster, stripe_standin: StripeStandin
) -> None:
    settings = dataclasses.replace(operator_settings, namespaces=("team-in",))
    _, key = stripe_standin.add_account()
    async with running_operator(settings):
        for namespace in ("team-in", "team-out"):
            await cluster.apply_secret(namespace, "stripe", {"secret-key": key})
            await cluster.create(SI, namespace, integration())
        await cluster.wait_condition(SI, "team-in", "prod", "Ready", status="True")
        await asyncio.sleep(1.0)
        assert (await cluster.get(SI, "team-out", "prod")).get("status") is None


async def test_managed_endpoint_is_created_in_the_sdks_api_version(
    operator, cluster: Cluster, stripe_standin: StripeStandin, namespace: str
) -> None:
    account_id, _ = await connected(cluster, stripe_standin, namespace, managed=True)
    obj = await eventually(lambda: cluster.get(SI, namespace, "prod"),
                           lambda o: bool(o["status"].get("webhookEndpointId")))
    (endpoint,) = _endpoints(stripe_standin, account_id)
    assert endpoint.api_version == api_versions.SDK_VERSION == obj["status"]["webhookEndpointApiVersion"]
    ready = await cluster.condition(SI, namespace, "prod", "WebhookEndpointReady")
    assert api_versions.SDK_VERSION in ready["message"]


async def test_an_endpoint_of_another_api_version_is_replaced_with_a_secret_overlap(
    kube, operator_settings, cluster: Cluster, stripe_standin: StripeStandin, namespace: str
) -> None:
    """Stripe cannot change an endpoint's version: a new endpoint, both signing secrets during the overlap, then
    the old endpoint deleted and its secret dropped."""
    overlapping = dataclasses.replace(operator_settings, resync_interval=0.3, endpoint_overlap=3600.0)
    async with running_operator(overlapping):
        account_id, _ = await connected(cluster, stripe_standin, namespace, managed=True)
        first = await eventually(lambda: cluster.get(SI, namespace, "prod"),
                                 lambda o: bool(o["status"].get("webhookEndpointId")))
        old_id = first["status"]["webhookEndpointId"]
        old_secret = stripe_standin.webhook_endpoints[old_id].secrets[-1]
        stripe_standin.tamper_endpoint(old_id, api_version="2024-06-20")  # e.g. made by an older fluxrate

        obj = await eventually(lambda: cluster.get(SI, namespace, "prod"),
                               lambda o: (o["status"].get("retiringWebhookEndpoint") or {}).get("id") == old_id)
        new_id = obj["status"]["webhookEndpointId"]
        assert new_id != old_id
        assert obj["status"]["retiringWebhookEndpoint"]["apiVersion"] == "2024-06-20"
        assert stripe_standin.webhook_endpoints[new_id].api_version == api_versions.SDK_VERSION
        assert old_id in stripe_standin.webhook_endpoints  # still delivering during the overlap
        secret = await cluster.kube.core.read_namespaced_secret(obj["status"]["webhookSecretName"], namespace)
        new_secret = stripe_standin.webhook_endpoints[new_id].secrets[-1]
        assert decode_secret_data(secret)["signing-secret"].splitlines() == [new_secret, old_secret]
        assert "EndpointReplaced" in {e["reason"] for e in await cluster.events(namespace, "prod")}

    retiring = dataclasses.replace(operator_settings, resync_interval=0.3, endpoint_overlap=0.0)
    async with running_operator(retiring):
        obj = await eventually(lambda: cluster.get(SI, namespace, "prod"),
                               lambda o: not o["status"].get("retiringWebhookEndpoint"))
        assert obj["status"]["webhookEndpointId"] == new_id
        assert [e.id for e in _endpoints(stripe_standin, account_id)] == [new_id]
        secret = await cluster.kube.core.read_namespaced_secret(obj["status"]["webhookSecretName"], namespace)
        assert decode_secret_data(secret)["signing-secret"] == new_secret
        await eventually(lambda: cluster.events(namespace, "prod"),
                         lambda events: "EndpointRetired" in {e["reason"] for e in events})


async def test_disconnect_also_deletes_an_endpoint_still_retiring(
    kube, operator_settings, cluster: Cluster, stripe_standin: StripeStandin, namespace: str
) -> None:
    settings = dataclasses.replace(operator_settings, resync_interval=0.3, endpoint_overlap=3600.0)
    async with running_operator(settings):
        account_id, _ = await connected(cluster, stripe_standin, namespace, managed=True)
        first = await eventually(lambda: cluster.get(SI, namespace, "prod"),
                                 lambda o: bool(o["status"].get("webhookEndpointId")))
        stripe_standin.tamper_endpoint(first["status"]["webhookEndpointId"], api_version=None)  # account default
        await eventually(lambda: cluster.get(SI, namespace, "prod"),
                         lambda o: bool(o["status"].get("retiringWebhookEndpoint")))
        assert len(_endpoints(stripe_standin, account_id)) == 2
        await cluster.delete(SI, namespace, "prod")
        await eventually(lambda: cluster.get(SI, namespace, "prod"), lambda o: o is None)
        assert _endpoints(stripe_standin, account_id) == []


async def test_the_operator_keeps_the_receivers_api_version_condition(
    operator, cluster: Cluster, stripe_standin: StripeStandin, namespace: str
) -> None:
    await connected(cluster, stripe_standin, namespace)
    seen = [{"apiVersion": "2019-12-03", "readable": False, "count": 1, "lastSeen": cond.timestamp()}]
    await cluster.kube.patch_status(SI, namespace, "prod", {"deliveries": {"apiVersions": seen}})
    await cluster.patch(SI, namespace, "prod", {"spec": {"displayName": "poke"}})
    condition = await cluster.wait_condition(SI, namespace, "prod", "WebhookApiVersion", status="False")
    assert condition["reason"] == "UnreadableApiVersion" and api_versions.SDK_VERSION in condition["message"]
    assert (await cluster.condition(SI, namespace, "prod", "Ready"))["status"] == "True"
