"""StripeIntegration, with the kopf operator running in-process on the sandbox."""

from __future__ import annotations

from typing import Any

from fluxrate.sandbox.stripe_standin import StripeStandin

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
