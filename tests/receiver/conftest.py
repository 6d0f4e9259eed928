"""Receiver test bench: a real receiver in the test loop, the Kubernetes sandbox, and the Stripe stand-in.

Integrations and Invoices are created through the Kubernetes API with their status written directly (as the
operator would), so these tests do not depend on the operator. Payment links are made exactly as the operator
makes them (``build_payment_link_params``) through the stripe SDK against the stand-in.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import stripe
from kubernetes_asyncio.client.exceptions import ApiException

from fluxrate import API_GROUP, API_VERSION
from fluxrate.kube import Kube
from fluxrate.models import DEFAULT_ENABLED_EVENTS, AfterCompletion, InvoiceSpec, amount_due
from fluxrate.operator.payment_links import build_payment_link_params, payment_link_idempotency_key
from fluxrate.stripe_api import build_stripe_client, close_stripe_client
from fluxrate.webhook_receiver.runner import RunningReceiver, running_receiver
from fluxrate.webhook_receiver.settings import ReceiverSettings
from fluxrate_sandbox.kube_server import KubeSandbox
from fluxrate_sandbox.stripe_standin import StripeStandin

from ..conftest import secret_manifest

ALL_EVENTS = list(DEFAULT_ENABLED_EVENTS)


@dataclass
class Stripe:
    account_id: str
    key: str
    client: stripe.StripeClient


@dataclass
class Bench:
    kube: Kube
    sandbox: KubeSandbox
    standin: StripeStandin
    stripe: Stripe
    running: RunningReceiver
    http: aiohttp.ClientSession
    namespace: str
    endpoints: dict[str, str] = field(default_factory=dict)  # integration -> stand-in endpoint id
    secrets: dict[str, str] = field(default_factory=dict)  # integration -> its current signing secret

    # --- objects ----------------------------------------------------------------------------------------

    async def apply_secret(self, name: str, data: dict[str, str], namespace: str | None = None) -> None:
        namespace = namespace or self.namespace
        body = secret_manifest(namespace, name, data)
        try:
            await self.kube.core.create_namespaced_secret(namespace, body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            await self.kube.core.replace_namespaced_secret(name, namespace, body)

    async def create(self, plural: str, body: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
        namespace = namespace or self.namespace
        body = {"apiVersion": f"{API_GROUP}/{API_VERSION}", **body}
        body["metadata"] = {**body.get("metadata", {}), "namespace": namespace}
        return await self.kube.custom.create_namespaced_custom_object(API_GROUP, API_VERSION, namespace, plural, body)

    async def get(self, plural: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        obj = await self.kube.get_object(plural, namespace or self.namespace, name)
        assert obj is not None, f"{plural} {name} not found"
        return obj

    async def invoice_status(self, name: str, namespace: str | None = None) -> dict[str, Any]:
        return (await self.get("invoices", name, namespace)).get("status") or {}

    async def integration(
        self, name: str = "stripe", *, mode: str = "test", active: bool = True, namespace: str | None = None,
        subscribe: bool = True,
    ) -> str:
        """A StripeIntegration with a pasted signing secret (webhookSecretRef) of a stand-in endpoint at this
        receiver. Returns the endpoint id."""
        namespace = namespace or self.namespace
        await self.apply_secret("stripe-credentials", {"secret-key": self.stripe.key}, namespace)
        endpoint = await self.stripe.client.v1.webhook_endpoints.create_async(params={
            "url": self.running.webhook_url(namespace, name), "enabled_events": ALL_EVENTS if subscribe else [
                "customer.created"],
        })
        await self.apply_secret(f"{name}-webhook", {"signing-secret": endpoint["secret"]}, namespace)
        await self.create("stripeintegrations", {
            "kind": "StripeIntegration",
            "metadata": {"name": name},
            "spec": {
                "secretKeyRef": {"name": "stripe-credentials", "key": "secret-key"},
                "webhookSecretRef": {"name": f"{name}-webhook", "key": "signing-secret"},
                "webhookEndpoint": {"managed": False},
                "active": active,
            },
        }, namespace)
        await self.kube.patch_status("stripeintegrations", namespace, name,
                                     {"mode": mode, "accountId": self.stripe.account_id})
        self.endpoints[f"{namespace}/{name}"] = endpoint["id"]
        self.secrets[f"{namespace}/{name}"] = endpoint["secret"]
        return endpoint["id"]

    async def invoice(
        self, name: str, *, integration: str = "stripe", currency: str = "USD",
        lines: tuple[tuple[str, int, str], ...] = (("Subscription", 1, "199.00"), ("Seats", 3, "12.50")),
        namespace: str | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """An Open invoice with a payment link made as the operator makes it. Returns (invoice, link)."""
        namespace = namespace or self.namespace
        spec = InvoiceSpec.model_validate({
            "integrationRef": {"name": integration},
            "customer": {"id": f"cus-{name}", "email": "billing@acme.example"},
            "currency": currency,
            "lineItems": [{"description": d, "quantity": q, "unitAmount": a} for d, q, a in lines],
            "state": "Finalized",
        })
        created = await self.create("invoices", {"kind": "Invoice", "metadata": {"name": name},
                                                 "spec": spec.to_k8s()}, namespace)
        uid = created["metadata"]["uid"]
        link = await self.stripe.client.v1.payment_links.create_async(
            params=build_payment_link_params(namespace, name, uid, spec, AfterCompletion()),
            options={"idempotency_key": payment_link_idempotency_key(uid)},
        )
        written = await self.kube.patch_status("invoices", namespace, name, {
            "phase": "Open", "amountDue": amount_due(spec).to_k8s(),
            "paymentLink": {"id": link["id"], "url": link["url"], "active": True},
        })
        return written, link.to_dict()

    # --- deliveries --------------------------------------------------------------------------------------

    def sign(self, payload: str, secret: str, timestamp: int | None = None) -> str:
        return stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp=timestamp)

    async def post(
        self, body: str | bytes, *, signature: str | None = None, integration: str = "stripe",
        namespace: str | None = None, secret: str | None = None, unsigned: bool = False,
    ) -> tuple[int, dict[str, Any]]:
        """POST a body to the receiver, signed with the integration's secret unless ``signature`` is given."""
        namespace = namespace or self.namespace
        text = body if isinstance(body, str) else body.decode("utf-8", "replace")
        headers = {"Content-Type": "application/json"}
        if signature is None and not unsigned:
            signature = self.sign(text, secret or self.secrets[f"{namespace}/{integration}"])
        if signature is not None:
            headers["Stripe-Signature"] = signature
        async with self.http.post(self.running.webhook_url(namespace, integration), data=body,
                                  headers=headers) as resp:
            return resp.status, await resp.json(content_type=None)

    async def send(self, event: dict[str, Any], **kwargs: Any) -> tuple[int, dict[str, Any]]:
        return await self.post(json.dumps(event), **kwargs)

    def event(self, type_: str, obj: dict[str, Any], *, livemode: bool = False) -> dict[str, Any]:
        return self.standin.make_event(type_, obj, account_id=self.stripe.account_id, livemode=livemode)

    async def flush(self) -> None:
        await self.running.receiver.recorder.flush()


def receiver_settings(**overrides: Any) -> ReceiverSettings:
    values: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "secret_cache_ttl": 300.0,
                              "status_flush_interval": 0.1, "shutdown_timeout": 5.0}
    return ReceiverSettings(**{**values, **overrides})


@pytest.fixture
def settings() -> ReceiverSettings:
    return receiver_settings()


@pytest.fixture
async def bench(
    kube: KubeSandbox, kube_client: Kube, stripe_standin: StripeStandin, namespace: str, settings: ReceiverSettings,
    caplog: pytest.LogCaptureFixture,
) -> AsyncIterator[Bench]:
    caplog.set_level(logging.INFO, logger="fluxrate")
    account_id, key = stripe_standin.add_account()
    client = build_stripe_client(key, api_base=stripe_standin.url, max_network_retries=0)
    async with running_receiver(settings) as running, aiohttp.ClientSession() as http:
        yield Bench(kube_client, kube, stripe_standin, Stripe(account_id, key, client), running, http, namespace)
        await stripe_standin.wait_deliveries_idle(30)
    await close_stripe_client(client)
