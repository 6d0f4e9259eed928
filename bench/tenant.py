"""Objects the receiver benchmark needs, written through the Kubernetes API as the operator would write them.

A StripeIntegration with a pasted signing secret (``webhookSecretRef``) and ``status.mode: test``, and Open
invoices with ``amountDue`` and a payment link id. The operator is not needed for the receiver benchmark.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from dataclasses import dataclass
from typing import Any

from fluxrate import API_GROUP, API_VERSION
from fluxrate.kube import Kube
from fluxrate.models import InvoiceSpec, amount_due
from fluxrate.operator.payment_links import link_metadata
from fluxrate_sandbox.real_kube import RealKube, collection_path
from fluxrate_sandbox.stack import Sandbox

INTEGRATION = "bench-stripe"
LINES = (("Subscription", 1, "199.00"), ("Seats", 3, "12.50"))  # 236.50 USD = 23650 minor units


@dataclass(frozen=True)
class OpenInvoice:
    name: str
    uid: str
    metadata: dict[str, str]  # what the payment link (and so every Stripe event) carries


@dataclass
class Tenant:
    namespace: str
    integration: str
    signing_secret: str


def invoice_spec(name: str, integration: str = INTEGRATION) -> InvoiceSpec:
    return InvoiceSpec.model_validate({
        "integrationRef": {"name": integration},
        "customer": {"id": f"cus-{name}", "email": "billing@acme.example"},
        "currency": "USD",
        "lineItems": [{"description": d, "quantity": q, "unitAmount": a} for d, q, a in LINES],
        "state": "Finalized",
    })


async def create_tenant(kube: Kube, namespace: str, stripe_key: str, integration: str = INTEGRATION) -> Tenant:
    signing_secret = "whsec_" + secrets.token_hex(16)
    for name, data in (("stripe-credentials", {"secret-key": stripe_key}),
                       (f"{integration}-webhook", {"signing-secret": signing_secret})):
        await kube.core.create_namespaced_secret(namespace, {
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
            "type": "Opaque", "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        })
    await kube.custom.create_namespaced_custom_object(API_GROUP, API_VERSION, namespace, "stripeintegrations", {
        "apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": "StripeIntegration",
        "metadata": {"name": integration, "namespace": namespace},
        "spec": {
            "secretKeyRef": {"name": "stripe-credentials", "key": "secret-key"},
            "webhookSecretRef": {"name": f"{integration}-webhook", "key": "signing-secret"},
            "webhookEndpoint": {"managed": False},
        },
    })
    await kube.patch_status("stripeintegrations", namespace, integration, {"mode": "test"})
    return Tenant(namespace, integration, signing_secret)


def seed_open_invoices(sandbox: Sandbox, tenant: Tenant, prefix: str, count: int) -> list[OpenInvoice]:
    """Open invoices with ``amountDue`` and a payment link id, as the operator leaves them, written straight into
    the emulator (no HTTP: fast setup; still validated against the CRD schema and its CEL rules)."""
    emulator = sandbox.kube.emulator
    api_version = f"{API_GROUP}/{API_VERSION}"
    out = []
    for i in range(count):
        name = f"{prefix}-{i:05d}"
        spec = invoice_spec(name, tenant.integration)
        created = emulator.create_object({"apiVersion": api_version, "kind": "Invoice",
                                          "metadata": {"name": name, "namespace": tenant.namespace},
                                          "spec": spec.to_k8s()})
        link_id = "plink_bench" + secrets.token_hex(8)
        emulator.patch_object(api_version, "invoices", tenant.namespace, name, {"status": {
            "phase": "Open", "amountDue": amount_due(spec).to_k8s(),
            "paymentLink": {"id": link_id, "url": f"https://buy.stripe.com/test_{link_id}", "active": True},
        }}, subresource="status")
        out.append(OpenInvoice(name, created["metadata"]["uid"],
                               link_metadata(tenant.namespace, name, created["metadata"]["uid"], spec)))
    return out


async def seed_open_invoices_real(real: RealKube, tenant: Tenant, prefix: str, count: int,
                                  concurrency: int = 32) -> tuple[list[OpenInvoice], dict[str, dict[str, Any]]]:
    """``seed_open_invoices`` on the real API server: each invoice created, then its status written (the
    status subresource ignores a created object's status), ``concurrency`` at a time over HTTP. Returns the
    invoices and each one's object as the status write left it (its resourceVersion, for ``status_patch_request``).
    """
    api_version = f"{API_GROUP}/{API_VERSION}"
    path = collection_path(api_version, "invoices", tenant.namespace)
    slots: list[OpenInvoice | None] = [None] * count
    objects: dict[str, dict[str, Any]] = {}
    next_index = 0

    async def one(http: Any, i: int) -> None:
        name = f"{prefix}-{i:05d}"
        spec = invoice_spec(name, tenant.integration)
        body = {"apiVersion": api_version, "kind": "Invoice",
                "metadata": {"name": name, "namespace": tenant.namespace}, "spec": spec.to_k8s()}
        async with http.post(path, json=body) as answer:
            if answer.status != 201:
                raise RuntimeError(f"creating {name}: {answer.status} {await answer.text()}")
            created = await answer.json()
        link_id = "plink_bench" + secrets.token_hex(8)
        status = {"status": {"phase": "Open", "amountDue": amount_due(spec).to_k8s(),
                             "paymentLink": {"id": link_id, "url": f"https://buy.stripe.com/test_{link_id}",
                                             "active": True}}}
        async with http.patch(f"{path}/{name}/status", json=status,
                              headers={"Content-Type": "application/merge-patch+json"}) as answer:
            if answer.status != 200:
                raise RuntimeError(f"writing {name}'s status: {answer.status} {await answer.text()}")
            objects[name] = await answer.json()
        uid = created["metadata"]["uid"]
        slots[i] = OpenInvoice(name, uid, link_metadata(tenant.namespace, name, uid, spec))

    async def worker(http: Any) -> None:
        nonlocal next_index
        while next_index < count:
            i, next_index = next_index, next_index + 1
            await one(http, i)

    async with real.client() as http:
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
    return [inv for inv in slots if inv is not None], objects
