"""Matching is confined to the URL's namespace and integration: a valid signature for one tenant cannot touch
another tenant's invoices."""

from __future__ import annotations

from typing import Any

import pytest

from fluxrate.webhook_receiver.settings import ReceiverSettings

from .conftest import Bench, receiver_settings


def _paid_session(metadata: dict[str, Any], session_id: str = "cs_1") -> dict[str, Any]:
    return {"id": session_id, "object": "checkout.session", "amount_total": 23650, "currency": "usd",
            "livemode": False, "metadata": metadata, "payment_intent": f"pi_{session_id}", "payment_status": "paid"}


async def test_signed_for_namespace_a_naming_an_invoice_of_namespace_b_leaves_b_untouched(bench: Bench) -> None:
    tenant_a, tenant_b = bench.namespace, f"{bench.namespace}-b"
    await bench.integration(namespace=tenant_a)
    await bench.integration(namespace=tenant_b)
    before, link_b = await bench.invoice("inv-shared", namespace=tenant_b)
    event = bench.event("checkout.session.completed", _paid_session(link_b["metadata"]))
    code, answer = await bench.send(event, namespace=tenant_a)
    assert (code, answer["outcome"]) == (200, "unmatched")
    after = await bench.get("invoices", "inv-shared", tenant_b)
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert after["status"]["phase"] == "Open"


async def test_same_name_in_the_urls_namespace_but_another_uid_is_unmatched(bench: Bench) -> None:
    tenant_a, tenant_b = bench.namespace, f"{bench.namespace}-b"
    await bench.integration(namespace=tenant_a)
    await bench.integration(namespace=tenant_b)
    await bench.invoice("inv-shared", namespace=tenant_a)
    _, link_b = await bench.invoice("inv-shared", namespace=tenant_b)
    event = bench.event("checkout.session.completed", _paid_session(link_b["metadata"]))
    code, answer = await bench.send(event, namespace=tenant_a)
    assert (code, answer["outcome"]) == (200, "unmatched")
    for namespace in (tenant_a, tenant_b):
        assert (await bench.invoice_status("inv-shared", namespace))["phase"] == "Open"


async def test_an_invoice_of_another_integration_is_unmatched(bench: Bench) -> None:
    await bench.integration("stripe")
    await bench.integration("other")
    _, link = await bench.invoice("inv-other", integration="other")
    event = bench.event("checkout.session.completed", _paid_session(link["metadata"]))
    code, answer = await bench.send(event, integration="stripe")
    assert (code, answer["outcome"]) == (200, "unmatched")
    assert "another integration" in answer["reason"]
    assert (await bench.invoice_status("inv-other"))["phase"] == "Open"
    assert (await bench.send(event, integration="other"))[1]["outcome"] == "applied"


@pytest.mark.parametrize("settings", [receiver_settings(namespaces=("somewhere-else",))])
async def test_namespaces_outside_the_served_ones_are_404(bench: Bench, settings: ReceiverSettings) -> None:
    await bench.integration()
    event = bench.event("customer.created", {"id": "cus_1", "object": "customer"})
    code, answer = await bench.send(event)
    assert (code, answer["outcome"]) == (404, "unmatched")
