"""A refund or dispute names only its PaymentIntent: the invoice that recorded it is found with a field selector on
the Invoice CRD's selectable field ``status.payment.providerPaymentId``, on the emulator and the real API server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from fluxrate import API_GROUP, API_VERSION, crds
from fluxrate.kube import Kube
from tests.sandbox.conftest import Backend

INVOICE_SPEC = {
    "integrationRef": {"name": "stripe"},
    "customer": {"id": "cus-1", "email": "billing@acme.example"},
    "currency": "USD",
    "lineItems": [{"description": "Subscription", "quantity": 1, "unitAmount": "199.00"}],
}


@pytest.fixture
async def fluxrate_kube(kube: Backend, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Kube]:
    await kube.apply_crds(crds.crds_dir())
    monkeypatch.setenv("KUBECONFIG", str(kube.kubeconfig))
    client = await Kube.connect()
    yield client
    await client.close()


async def _invoice(client: Kube, namespace: str, name: str, payment_id: str | None) -> None:
    await client.custom.create_namespaced_custom_object(API_GROUP, API_VERSION, namespace, "invoices", {
        "apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": "Invoice",
        "metadata": {"name": name, "namespace": namespace}, "spec": INVOICE_SPEC})
    if payment_id is None:
        return
    await client.patch_status("invoices", namespace, name, {"phase": "Paid", "payment": {
        "providerPaymentId": payment_id, "amount": "199.00", "amountMinor": 19900, "currency": "USD",
        "paidAt": "2026-12-01T10:00:00Z", "eventId": "evt_1", "eventType": "payment_intent.succeeded",
        "source": "webhook"}})


async def test_find_invoice_by_payment_uses_the_selectable_status_field(kube: Backend, fluxrate_kube: Kube) -> None:
    await _invoice(fluxrate_kube, kube.namespace, "inv-paid", "pi_lookup_1")
    await _invoice(fluxrate_kube, kube.namespace, "inv-other", "pi_lookup_2")
    await _invoice(fluxrate_kube, kube.namespace, "inv-open", None)

    found = await fluxrate_kube.find_invoice_by_payment(kube.namespace, "pi_lookup_1")
    assert found is not None
    assert found["metadata"]["name"] == "inv-paid"
    assert found["status"]["payment"]["providerPaymentId"] == "pi_lookup_1"
    assert found["kind"] == "Invoice" and found["metadata"].get("resourceVersion")

    assert await fluxrate_kube.find_invoice_by_payment(kube.namespace, "pi_nobody") is None
    # another namespace's invoices are never found
    assert await fluxrate_kube.find_invoice_by_payment("kube-public", "pi_lookup_1") is None
