"""Subscriptions follow (issue 17): the managed endpoint enables the after-payment event types (also for an
integration stored with the old seven, and an endpoint made before them is repaired), and a hand-made endpoint
missing some gets ``MissingEvents`` naming them. The operator runs in-process on the sandbox."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from fluxrate.models import AFTER_PAYMENT_EVENTS, DEFAULT_ENABLED_EVENTS, DISPUTE_EVENTS, PAYMENT_EVENTS, REFUND_EVENTS
from fluxrate.operator.main import running_operator
from fluxrate.operator.settings import OperatorSettings
from fluxrate.stripe_api import build_stripe_client, close_stripe_client
from fluxrate_sandbox.stripe_standin import StripeStandin

from ..conftest import eventually
from .conftest import PUBLIC_BASE_URL, Cluster
from .test_integrations import _endpoints, integration

SI = "stripeintegrations"
OLD_SEVEN = list(PAYMENT_EVENTS)  # what the CRD persisted as the default before issue 17


@pytest.fixture
def resyncing(operator_settings: OperatorSettings) -> OperatorSettings:
    return dataclasses.replace(operator_settings, resync_interval=0.3)


async def test_managed_endpoint_of_an_integration_stored_with_the_old_seven_gets_the_new_types(
    kube, resyncing: OperatorSettings, cluster: Cluster, stripe_standin: StripeStandin, namespace: str
) -> None:
    account_id, key = stripe_standin.add_account()
    await cluster.apply_secret(namespace, "stripe", {"secret-key": key})
    async with running_operator(resyncing):
        await cluster.create(SI, namespace, integration(webhookEndpoint={"managed": True, "enabledEvents": OLD_SEVEN}))
        await cluster.wait_condition(SI, namespace, "prod", "WebhookEndpointReady", status="True")
        (endpoint,) = _endpoints(stripe_standin, account_id)
        assert sorted(endpoint.enabled_events) == sorted(DEFAULT_ENABLED_EVENTS)

        # an endpoint an older fluxrate registered: the old seven only; the resync adds the new types
        stripe_standin.tamper_endpoint(endpoint.id, enabled_events=OLD_SEVEN)
        await eventually(lambda: sorted(stripe_standin.webhook_endpoints[endpoint.id].enabled_events),
                         lambda events: events == sorted(DEFAULT_ENABLED_EVENTS))
        await eventually(lambda: cluster.events(namespace, "prod"),
                         lambda events: any(e["reason"] == "EndpointRepaired" and "enabled_events" in e["message"]
                                            for e in events))
        assert [e.id for e in _endpoints(stripe_standin, account_id)] == [endpoint.id]  # repaired, not replaced
        assert await cluster.condition(SI, namespace, "prod", "MissingEvents") is None


async def hand_made_endpoint(key: str, standin: StripeStandin, url: str, events: list[str]) -> str:
    client = build_stripe_client(key, api_base=standin.url, max_network_retries=0)
    try:
        created = await client.v1.webhook_endpoints.create_async(params={"url": url, "enabled_events": events})
    finally:
        await close_stripe_client(client)
    return created.id


async def test_hand_made_endpoint_missing_refund_events_is_named_then_fixed(
    kube, resyncing: OperatorSettings, cluster: Cluster, stripe_standin: StripeStandin, namespace: str
) -> None:
    _, key = stripe_standin.add_account()
    await cluster.apply_secret(namespace, "stripe", {"secret-key": key})
    url = f"{PUBLIC_BASE_URL}/api/v1/webhooks/stripe/{namespace}/prod"
    endpoint_id = await hand_made_endpoint(key, stripe_standin, url, [*OLD_SEVEN, *DISPUTE_EVENTS])
    await hand_made_endpoint(key, stripe_standin, "https://elsewhere.example/hook", ["*"])  # another URL's
    async with running_operator(resyncing):
        await cluster.create(SI, namespace, integration())
        missing = await cluster.wait_condition(SI, namespace, "prod", "MissingEvents", status="True")
        assert missing["reason"] == "EventsNotEnabled"
        assert f"Developers > Webhooks > {endpoint_id}" in missing["message"]
        named = missing["message"].split("add the events: ")[1].split(". ")[0].split(", ")
        assert sorted(named) == sorted(REFUND_EVENTS)  # the refund types, not the ones already ticked
        assert (await cluster.condition(SI, namespace, "prod", "Ready"))["status"] == "True"

        lists = stripe_standin.count_requests(method="GET", path="/v1/webhook_endpoints")
        stripe_standin.tamper_endpoint(endpoint_id, enabled_events=[*OLD_SEVEN, *AFTER_PAYMENT_EVENTS])
        fixed = await cluster.wait_condition(SI, namespace, "prod", "MissingEvents", status="False")
        assert fixed["reason"] == "AllEventsEnabled"
    assert stripe_standin.count_requests(method="GET", path="/v1/webhook_endpoints") > lists


@pytest.mark.parametrize(("events", "status", "reason"), [
    (None, "Unknown", "EndpointNotFound"),
    (["*"], "False", "AllEventsEnabled"),
], ids=["no-endpoint", "wildcard"])
async def test_hand_made_endpoint_not_found_or_wildcard_keeps_ready(
    operator, cluster: Cluster, stripe_standin: StripeStandin, namespace: str, events: list[str] | None,
    status: str, reason: str,
) -> None:
    _, key = stripe_standin.add_account()
    await cluster.apply_secret(namespace, "stripe", {"secret-key": key})
    url = f"{PUBLIC_BASE_URL}/api/v1/webhooks/stripe/{namespace}/prod"
    if events is not None:
        await hand_made_endpoint(key, stripe_standin, url, events)
    await cluster.create(SI, namespace, integration())
    condition: dict[str, Any] = await cluster.wait_condition(SI, namespace, "prod", "MissingEvents", reason=reason)
    assert condition["status"] == status
    if events is None:
        assert url in condition["message"] and "charge.refunded" in condition["message"]
    assert (await cluster.condition(SI, namespace, "prod", "Ready"))["status"] == "True"
