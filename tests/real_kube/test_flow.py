"""The whole flow on the real kube-apiserver, with the chart's own ServiceAccounts and RBAC, in three install modes.

Each mode gets a control plane of its own. The operator and the receiver run as processes whose kubeconfigs hold
tokens of the chart's ServiceAccounts, bound by the chart's rendered Roles, ClusterRoles and bindings. Any 403
fails the test.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path
from typing import Any

import pytest

from fluxrate import conditions as cond
from fluxrate import webhook_url
from fluxrate.kube import Kube, ObjectRef
from fluxrate.models import DEFAULT_ENABLED_EVENTS
from fluxrate.operator.receipt_email import receipt_message_id
from fluxrate.stripe_api import build_stripe_client, close_stripe_client
from fluxrate_sandbox.processes import wait_for
from fluxrate_sandbox.real_kube import RealKube
from tests.real_kube.chart_stack import GROUP_VERSION, Obj, Stack, chart_stack, forbidden
from tests.real_kube.crd_helpers import kubectl_ok

pytestmark = pytest.mark.timeout(300)

# How a refusal shows in kopf's, kubernetes_asyncio's and our own log lines (not a millisecond field ",403").
DENIED = re.compile(r"forbidden|\(403\)|\b(status|code)\W{0,3}403\b", re.IGNORECASE)
WATCH_LABEL = {"billing.fluxrate.co/watch": "true"}
MODES: dict[str, tuple[dict[str, Any], str]] = {
    "cluster-wide": ({}, "tenant-a"),
    "namespaced": ({"watchNamespaces": ["team-a", "team-b"]}, "team-a"),
    "ha": ({"operator": {"ha": {"enabled": True, "priorities": [200, 100]}}}, "tenant-a"),
}


def secret(namespace: str, name: str, data: dict[str, str]) -> Obj:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "stringData": data,
            "metadata": {"name": name, "namespace": namespace, "labels": WATCH_LABEL}}


def integration(namespace: str, name: str, **spec: Any) -> Obj:
    return {"apiVersion": GROUP_VERSION, "kind": "StripeIntegration",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"secretKeyRef": {"name": "stripe-credentials", "key": "secret-key"}, **spec}}


def invoice(namespace: str, name: str, integration_name: str = "stripe") -> Obj:
    return {"apiVersion": GROUP_VERSION, "kind": "Invoice", "metadata": {"name": name, "namespace": namespace},
            "spec": {"integrationRef": {"name": integration_name},
                     "customer": {"id": f"cus-{name}", "email": f"billing+{name}@{namespace}.example",
                                  "name": f"Customer {name}"},
                     "currency": "USD",
                     "lineItems": [{"description": "Platform subscription", "quantity": 1, "unitAmount": "199.00"},
                                   {"description": "Extra seats", "quantity": 3, "unitAmount": "12.50"}],
                     "state": "Finalized"}}


def ready(obj: Obj) -> bool:
    found = cond.get((obj.get("status") or {}).get("conditions"), "Ready")
    return bool(found and found["status"] == "True")


def connected(obj: Obj) -> bool:
    return ready(obj) and bool((obj.get("status") or {}).get("webhookEndpointId"))


def is_open(obj: Obj) -> bool:
    status = obj.get("status") or {}
    return status.get("phase") == "Open" and bool((status.get("notification") or {}).get("sentAt"))


def phase(wanted: str) -> Any:
    return lambda obj: (obj.get("status") or {}).get("phase") == wanted


async def owner_uids(kube: RealKube, namespace: str, name: str) -> list[str] | None:
    found = await kube.get_object("v1", "secrets", namespace, name)
    return None if found is None else [ref["uid"] for ref in found["metadata"].get("ownerReferences", [])]


async def _after_payment(stack: Stack, kube: RealKube, ns: str, inv: Obj) -> None:
    """The receipt (the operator reads the payment in Stripe), a partial refund and a dispute (the receiver finds the
    invoice by the selectable field, under the chart's RBAC), as `kubectl get inv` shows them."""
    stripe, status = stack.stripe, inv["status"]
    payment_id, uid = status["payment"]["providerPaymentId"], inv["metadata"]["uid"]
    receipt = await stack.wait("the receipt to be recorded", "invoices", ns, "inv-1",
                               lambda o: bool(((o.get("status") or {}).get("receipt") or {}).get("sentAt")))
    assert receipt["status"]["receipt"]["messageId"] == receipt_message_id(payment_id, uid)
    mails = stack.smtp.to(inv["spec"]["customer"]["email"])
    (receipt_mail,) = [m for m in mails if str(m.message["Message-ID"]).strip() == receipt_message_id(payment_id, uid)]
    assert "Visa ending 4242" in receipt_mail.body("plain")

    refund = await stripe.refund(payment_id, amount=5000)
    await refund.delivered
    refunded = await stack.wait("the partial refund to be recorded", "invoices", ns, "inv-1",
                                lambda o: ((o.get("status") or {}).get("amountRefunded") or {}).get("minor") == 5000)
    assert refunded["status"]["phase"] == "Paid"
    assert [(r["id"], r["status"]) for r in refunded["status"]["refunds"]] == [(refund.refund["id"], "succeeded")]
    table = kubectl_ok(kube, "-n", ns, "get", "inv", "inv-1")
    header, row = table.splitlines()[:2]
    assert dict(zip(header.split(), row.split(), strict=False))["REFUNDED"] == "50.00", table

    dispute = await stripe.open_dispute(payment_id, reason="fraudulent", amount=18650)
    await dispute.delivered
    disputed = await stack.wait_condition("invoices", ns, "inv-1", "Disputed", status="True", reason="DisputeOpen")
    assert dispute.dispute["id"] in disputed["message"]
    closed = await stripe.close_dispute(dispute.dispute["id"], won=False)
    await closed.delivered
    lost = await stack.wait("the lost dispute to refund the rest", "invoices", ns, "inv-1", phase("Refunded"))
    assert lost["status"]["amountRefunded"]["minor"] == 5000 + 18650


@pytest.mark.parametrize("mode", sorted(MODES))
async def test_whole_flow_under_the_charts_rbac(mode: str, own_real_kube: RealKube, tmp_path: Path) -> None:
    values, ns = MODES[mode]
    kube = own_real_kube
    await kube.ensure_namespace(ns)
    async with chart_stack(kube, values, tmp_path / "stack") as stack:
        await _flow(stack, kube, ns, ha=mode == "ha")
        if mode == "namespaced":
            await _other_namespaces_are_refused(stack, kube)
        logs = stack.logs()
    denied = [line for line in logs.splitlines() if DENIED.search(line)]
    assert not denied, "the API server refused a request:\n" + "\n".join(denied[:10])


async def _flow(stack: Stack, kube: RealKube, ns: str, *, ha: bool) -> None:
    stripe = stack.stripe
    # Connect, with the managed endpoint and the Secret it owns.
    account_id, key = stripe.add_account()
    await kube.create_object(secret(ns, "stripe-credentials", {"secret-key": key}))
    await kube.create_object(integration(ns, "stripe", webhookEndpoint={"managed": True}))
    si = await stack.wait("the integration to connect", "stripeintegrations", ns, "stripe", connected)
    endpoint = stripe.webhook_endpoints[si["status"]["webhookEndpointId"]]
    assert endpoint.url == si["status"]["webhookURL"] == webhook_url(stack.receiver_base, ns, "stripe")
    signing_secret_name = si["status"]["webhookSecretName"]
    assert await owner_uids(kube, ns, signing_secret_name) == [si["metadata"]["uid"]]

    # A link and an email.
    await kube.create_object(invoice(ns, "inv-1"))
    inv = await stack.wait("inv-1 to be Open and emailed", "invoices", ns, "inv-1", is_open)
    link = inv["status"]["paymentLink"]
    (mail,) = stack.smtp.to(inv["spec"]["customer"]["email"])
    assert link["url"] in mail.body("plain")

    # A declined payment, then a paid one: Paid, and the link deactivated.
    failed = await stripe.pay(link["id"], outcome="failed")
    await failed.delivered
    await stack.wait("the decline to be recorded", "invoices", ns, "inv-1",
                     lambda o: bool((o.get("status") or {}).get("lastPaymentError")))
    paid = await stripe.pay(link["id"], duplicate=2)
    await paid.delivered
    inv = await stack.wait("inv-1 to be Paid", "invoices", ns, "inv-1", phase("Paid"))
    assert inv["status"]["payment"]["providerPaymentId"] == paid.payment_intent["id"]
    await wait_for("the link to be deactivated", lambda: stripe.payment_links[link["id"]].obj["active"],
                   lambda active: not active, timeout=30)
    assert stripe.links_created_by_invoice[inv["metadata"]["uid"]] == 1
    await _after_payment(stack, kube, ns, inv)

    # Key rotation: the new key is used at once, the old one can be revoked.
    new_key = stripe.add_key(account_id)
    await kube.apply(secret(ns, "stripe-credentials", {"secret-key": new_key}))
    await wait_for("KeyRotated", lambda: stack.events(ns, "stripe"),
                   lambda events: any(e["reason"] == "KeyRotated" for e in events), timeout=30)
    stripe.revoke_key(key)
    await kube.create_object(invoice(ns, "inv-2"))
    await stack.wait("inv-2 to be Open with the new key", "invoices", ns, "inv-2", is_open)

    # Signing-secret rotation, on an endpoint set up by hand (the guide's steps 3-4).
    await _signing_secret_rotation(stack, kube, ns, new_key)

    # Disable: no new links, and the invoice proceeds when re-activated.
    await kube.patch_object(GROUP_VERSION, "stripeintegrations", ns, "stripe", {"spec": {"active": False}})
    await stack.wait_condition("stripeintegrations", ns, "stripe", "Ready", status="False", reason="Disabled")
    await kube.create_object(invoice(ns, "inv-4"))
    await stack.wait_condition("invoices", ns, "inv-4", "IntegrationReady", status="False",
                               reason="IntegrationDisabled")
    await kube.patch_object(GROUP_VERSION, "stripeintegrations", ns, "stripe", {"spec": {"active": True}})
    await stack.wait("inv-4 to be Open after re-activation", "invoices", ns, "inv-4", is_open)

    if ha:  # the leader leaves; the standby (lower priority) carries on with the rest of the flow
        await stack.operators[0].kill(signal.SIGTERM)

    # Disconnect through the finalizer: the managed endpoint is deleted in Stripe.
    await kube.delete_object(GROUP_VERSION, "stripeintegrations", ns, "stripe")
    await wait_for("the integration to be gone", lambda: stack.get("stripeintegrations", ns, "stripe"),
                   lambda obj: obj is None, timeout=60)
    assert endpoint.id not in stripe.webhook_endpoints
    # The real garbage collector removes the Secret the integration owned.
    await wait_for("the owned signing Secret to be collected", lambda: owner_uids(kube, ns, signing_secret_name),
                   lambda uids: uids is None, timeout=60)

    # The same name again: a new endpoint, and a Secret owned by the new integration alone.
    await kube.create_object(integration(ns, "stripe", webhookEndpoint={"managed": True}))
    again = await stack.wait("the integration to connect again", "stripeintegrations", ns, "stripe", connected)
    assert again["metadata"]["uid"] != si["metadata"]["uid"]
    assert again["status"]["webhookEndpointId"] != endpoint.id
    assert await owner_uids(kube, ns, again["status"]["webhookSecretName"]) == [again["metadata"]["uid"]]


async def _signing_secret_rotation(stack: Stack, kube: RealKube, ns: str, key: str) -> None:
    stripe = stack.stripe
    client = build_stripe_client(key, api_base=stripe.url)
    try:
        endpoint = await client.v1.webhook_endpoints.create_async(params={
            "url": webhook_url(stack.receiver_base, ns, "manual"), "enabled_events": list(DEFAULT_ENABLED_EVENTS)})
    finally:
        await close_stripe_client(client)
    old = endpoint["secret"]
    await kube.create_object(secret(ns, "manual-webhook", {"signing-secret": old}))
    await kube.create_object(integration(ns, "manual", webhookEndpoint={"managed": False},
                                         webhookSecretRef={"name": "manual-webhook", "key": "signing-secret"}))
    await stack.wait_condition("stripeintegrations", ns, "manual", "WebhookSecretConfigured", status="True")
    await kube.create_object(invoice(ns, "inv-3", "manual"))
    inv = await stack.wait("inv-3 to be Open", "invoices", ns, "inv-3", is_open)

    new = stripe.roll_endpoint_secret(endpoint["id"])
    stripe.expire_old_secrets(endpoint["id"])  # Stripe signs with the new secret only
    await kube.apply(secret(ns, "manual-webhook", {"signing-secret": f"{new}\n{old}\n"}))
    paid = await stripe.pay(inv["status"]["paymentLink"]["id"])
    await paid.delivered
    await stack.wait("inv-3 to be Paid after the signing secret rolled", "invoices", ns, "inv-3", phase("Paid"))
    attempts = [a for a in stripe.delivery_log if a.event_id in {e["id"] for e in paid.events}]
    assert attempts and all(a.status == 200 for a in attempts)


async def _other_namespaces_are_refused(stack: Stack, kube: RealKube) -> None:
    await kube.ensure_namespace("elsewhere")
    await kube.create_object({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                              "metadata": {"name": "not-yours", "namespace": "elsewhere"},
                              "stringData": {"password": "elsewhere-only"}})
    operator_token = await stack.release.token_of("fr-fluxrate-operator")
    receiver_token = await stack.release.token_of("fr-fluxrate-receiver")
    invoices = f"/apis/{GROUP_VERSION}/namespaces/elsewhere/invoices"
    assert await forbidden(kube, operator_token, "GET", invoices)
    assert await forbidden(kube, operator_token, "GET", "/api/v1/namespaces/elsewhere/secrets/not-yours")
    assert await forbidden(kube, operator_token, "GET", f"/apis/{GROUP_VERSION}/invoices")  # cluster-wide list
    assert await forbidden(kube, receiver_token, "GET", "/api/v1/namespaces/elsewhere/secrets/not-yours")
    assert await forbidden(kube, receiver_token, "PATCH",
                           f"/apis/{GROUP_VERSION}/namespaces/elsewhere/invoices/x/status", {"status": {}})
    # ... while the same requests in a watched namespace are allowed.
    assert not await forbidden(kube, operator_token, "GET", f"/apis/{GROUP_VERSION}/namespaces/team-b/invoices")


async def test_owned_secret_changes_owner_without_a_second_controller(real_kube: RealKube) -> None:
    """Re-registering a managed endpoint while a Secret of an earlier owner still exists (the same integration
    name deleted and created again before garbage collection): one controller reference, the new owner's."""
    ns = "owned-secret"
    await real_kube.ensure_namespace(ns)
    owners = [await real_kube.create_object(integration(ns, name)) for name in ("first", "second")]
    kube = await Kube.connect()
    try:
        for owner in owners:
            await kube.write_owned_secret(ObjectRef.of(owner), "shared-signing", {"signing-secret": "whsec_x"},
                                          {"app.kubernetes.io/managed-by": "fluxrate"})
    finally:
        await kube.close()
    found = await real_kube.get_object("v1", "secrets", ns, "shared-signing")
    assert found is not None
    refs = found["metadata"]["ownerReferences"]
    assert [(r["uid"], r["controller"]) for r in refs] == [(owners[1]["metadata"]["uid"], True)]

