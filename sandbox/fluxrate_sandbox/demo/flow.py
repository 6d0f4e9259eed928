"""The demo: sandbox in this process; operator and receiver as separate processes wired as in a cluster."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml
from kubernetes_asyncio.client.exceptions import ApiException

from fluxrate import conditions as cond
from fluxrate.kube import Kube
from fluxrate_sandbox.demo import lifecycle
from fluxrate_sandbox.demo.narrator import Narrator
from fluxrate_sandbox.processes import WaitTimeout, free_port, process, wait_for, wait_http_ok
from fluxrate_sandbox.real_kube import RealKubeUnavailable
from fluxrate_sandbox.stack import Sandbox, running_sandbox

ROOT_EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


class DemoFailed(RuntimeError):
    pass


def load_documents(folder: Path) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.yaml")):
        docs.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return docs


async def ensure_namespace(kube: Kube, namespace: str) -> None:
    """A real API server has only ``default``: create the demo's namespace (the emulator creates it on use)."""
    try:
        await kube.core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    except ApiException as exc:
        if exc.status != 409:
            raise


async def apply(kube: Kube, namespace: str, doc: dict[str, Any]) -> None:
    if doc["kind"] == "Secret":
        await kube.core.create_namespaced_secret(namespace, doc)
        return
    group, version = doc["apiVersion"].split("/")
    plural = {"StripeIntegration": "stripeintegrations", "Invoice": "invoices"}[doc["kind"]]
    await kube.custom.create_namespaced_custom_object(group, version, namespace, plural, doc)


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any] | None:
    return cond.get(((obj or {}).get("status") or {}).get("conditions"), type_)


async def run_demo(state_dir: Path, *, namespace: str = "demo", keep: bool = False, examples: Path | None = None,
                   stripe_api_key: str | None = None, kube_backend: str = "emulator") -> int:
    say = Narrator()
    try:
        await _demo(say, state_dir, namespace, keep, examples or ROOT_EXAMPLES, stripe_api_key, kube_backend)
    except RealKubeUnavailable as exc:
        say.warn(f"demo failed: {exc}")
        return 1
    except (DemoFailed, WaitTimeout) as exc:
        say.warn(f"demo failed: {exc}")
        say.detail(f"logs: {state_dir}/operator.log, {state_dir}/receiver.log")
        return 1
    return 0


async def _demo(say: Narrator, state_dir: Path, namespace: str, keep: bool, examples: Path,
                stripe_api_key: str | None, kube_backend: str) -> None:
    receiver_port = free_port()
    public_base_url = f"http://127.0.0.1:{receiver_port}"
    real_stripe = bool(stripe_api_key)
    kube_name = "real kube-apiserver" if kube_backend == "real" else "Kubernetes API emulator"
    say.step(f"Starting the sandbox: {kube_name}, " + ("real Stripe test mode" if real_stripe else
                                                        "Stripe API stand-in") + " and SMTP sink")
    async with running_sandbox(state_dir, public_base_url=public_base_url, webhook_time_scale=0.0005,
                               kube_backend=kube_backend) as sandbox:
        say.detail(f"Kubernetes API  {sandbox.kube.url}  (kubeconfig {sandbox.kube.kubeconfig})",
                   f"Stripe API      {'https://api.stripe.com' if real_stripe else sandbox.stripe.url}",
                   f"SMTP sink       {sandbox.smtp.host}:{sandbox.smtp.port}")
        env = {**sandbox.env(), "FLUXRATE_LOG_LEVEL": "INFO", "FLUXRATE_RECONCILE_INTERVAL": "5",
               "FLUXRATE_RETRY_DELAY": "1",
               "FLUXRATE_RECEIVER_HOST": "127.0.0.1", "FLUXRATE_RECEIVER_PORT": str(receiver_port),
               "FLUXRATE_RECEIVER_STATUS_FLUSH_INTERVAL": "0.5"}
        if real_stripe:
            env.pop("FLUXRATE_STRIPE_API_BASE")
        os.environ["KUBECONFIG"] = str(sandbox.kube.kubeconfig)
        say.step("Starting the operator and the webhook receiver as separate processes")
        async with (
            process("operator", ["operator"], env, state_dir / "operator.log") as operator,
            process("receiver", ["receiver"], env, state_dir / "receiver.log") as receiver,
        ):
            kube = await Kube.connect()
            try:
                await _flow(say, sandbox, kube, namespace, examples, operator.pid, receiver.pid, public_base_url,
                            stripe_api_key)
                if keep:
                    say.step("Everything keeps running (Ctrl-C stops it)")
                    say.detail(f"export KUBECONFIG={sandbox.kube.kubeconfig}",
                               f"kubectl -n {namespace} get invoices,stripeintegrations",
                               f"env for your own operator/receiver: {sandbox.env_file}")
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.Event().wait()
            finally:
                await kube.close()


async def _flow(say: Narrator, sandbox: Sandbox, kube: Kube, namespace: str, examples: Path, operator_pid: int,
                receiver_pid: int, public_base_url: str, stripe_api_key: str | None) -> None:
    await wait_http_ok("the receiver to be ready", f"{public_base_url}/readyz")
    say.ok(f"operator pid {operator_pid}; receiver pid {receiver_pid} ready at {public_base_url}")

    say.step(f"Applying {examples}/ to namespace {namespace}")
    await ensure_namespace(kube, namespace)
    docs = load_documents(examples)
    for doc in docs:
        if doc["kind"] == "Secret" and stripe_api_key:
            doc["stringData"] = {key: stripe_api_key for key in doc.get("stringData", {})}
        if doc["kind"] == "StripeIntegration" and stripe_api_key:
            doc["spec"]["webhookEndpoint"] = {"managed": False}  # Stripe cannot reach a laptop
        try:
            await apply(kube, namespace, doc)
        except ApiException as exc:
            raise DemoFailed(f"applying {doc['kind']} {doc['metadata']['name']}: {exc.reason}") from None
        say.detail(f"{doc['kind'].lower()}/{doc['metadata']['name']} created")
    integration_name = next(d["metadata"]["name"] for d in docs if d["kind"] == "StripeIntegration")
    invoices = [d["metadata"]["name"] for d in docs if d["kind"] == "Invoice"]

    say.step("StripeIntegration connects")

    async def integration() -> dict[str, Any] | None:
        return await kube.get_object("stripeintegrations", namespace, integration_name)

    def connected(obj: dict[str, Any] | None) -> bool:
        ready_condition = condition(obj, "Ready")
        managed = (obj or {}).get("spec", {}).get("webhookEndpoint", {}).get("managed")
        return bool(ready_condition and ready_condition["status"] == "True"
                    and (not managed or (obj or {}).get("status", {}).get("webhookEndpointId")))

    si = await wait_for("the integration to be Ready", integration, connected)
    status = si["status"]
    say.ok(f"Ready: {condition(si, 'Ready')['message']}")
    say.detail(f"webhook URL:      {status['webhookURL']}")
    if status.get("webhookEndpointId"):
        say.detail(f"managed endpoint: {status['webhookEndpointId']} (signing secret kept in Secret "
                   f"{status['webhookSecretName']})")

    say.step("Invoices are finalized: one Payment Link each")

    async def invoice(name: str) -> dict[str, Any] | None:
        return await kube.get_object("invoices", namespace, name)

    opened: dict[str, dict[str, Any]] = {}
    for name in invoices:
        opened[name] = await wait_for(f"invoice {name} to be Open", lambda name=name: invoice(name),
                                      lambda o: (o or {}).get("status", {}).get("phase") == "Open")
        st = opened[name]["status"]
        say.ok(f"{name}: Finalized → Open, {st['amountDue']['display']}, link {st['paymentLink']['url']}")

    if stripe_api_key:
        say.step("Pay it yourself in Stripe test mode")
        say.detail("Open a link above and pay with card 4242 4242 4242 4242; the operator's reconciliation finds "
                   "the payment (webhooks need a public URL: see docs/user-guide.md, 'Local testing').")
        await wait_for("a payment", lambda: invoice(invoices[0]),
                       lambda o: (o or {}).get("status", {}).get("phase") == "Paid", timeout=600)
        return

    late = lifecycle.overdue_invoice(docs, invoices[0])
    overdue: asyncio.Task[tuple[dict[str, Any], Any]] | None = None
    if late is not None:
        await lifecycle.fall_due_soon(say, kube, namespace, late)
        overdue = asyncio.create_task(lifecycle.overdue_and_reminded(kube, sandbox, namespace, late))
    try:
        await _pay_and_refund(say, sandbox, kube, namespace, invoices, opened, integration)
        if overdue is not None and late is not None:
            lifecycle.show_overdue(say, late, *await overdue)
    finally:
        if overdue is not None and not overdue.done():
            overdue.cancel()
    await lifecycle.show_kubectl_get(say, kube, namespace, invoices)
    await _summary(say, sandbox, kube, namespace, invoices, integration)


async def _pay_and_refund(say: Narrator, sandbox: Sandbox, kube: Kube, namespace: str, invoices: list[str],
                          opened: dict[str, dict[str, Any]], integration: Callable[[], Awaitable[Any]]) -> None:
    async def invoice(name: str) -> dict[str, Any] | None:
        return await kube.get_object("invoices", namespace, name)

    say.step("The customer's email")
    await wait_for("the emails", lambda: _count(sandbox), lambda n: n >= len(invoices))
    first = opened[invoices[0]]
    (mail,) = sandbox.smtp.to(first["spec"]["customer"]["email"])
    say.detail(f"To: {mail.message['To']}", f"Subject: {mail.subject}")
    say.block(mail.body("plain"))

    link_id = first["status"]["paymentLink"]["id"]
    say.step(f"The customer pays {invoices[0]}: a card that is declined first")
    failed = await sandbox.stripe.pay(link_id, outcome="failed")
    await failed.delivered
    declined = await wait_for("the failure to be recorded", lambda: invoice(invoices[0]),
                              lambda o: bool((o or {}).get("status", {}).get("lastPaymentError")))
    say.warn(f"payment_intent.payment_failed → lastPaymentError: "
             f"{declined['status']['lastPaymentError']['message']} (the invoice stays payable)")

    say.step("Then a card that succeeds (Stripe delivers every event twice here)")
    paid = await sandbox.stripe.pay(link_id, duplicate=2)
    await paid.delivered
    done = await wait_for("the invoice to be Paid", lambda: invoice(invoices[0]),
                          lambda o: (o or {}).get("status", {}).get("phase") == "Paid")
    payment = done["status"]["payment"]
    say.ok(f"{invoices[0]} is Paid: {payment['amount']} {payment['currency']}, provider payment id "
           f"{payment['providerPaymentId']}, via {payment['eventType']} ({payment['source']})")

    say.step("Signed webhook deliveries and their outcomes")
    event_ids = {e["id"] for e in [*failed.events, *paid.events]}
    si = await wait_for("delivery outcomes in the integration's status", integration,
                        lambda o: len([d for d in ((o or {}).get("status", {}).get("deliveries") or {})
                                       .get("recent", []) if d.get("eventId") in event_ids])
                        >= sum(1 for a in sandbox.stripe.delivery_log if a.event_id in event_ids))
    recent = [d for d in si["status"]["deliveries"]["recent"] if d.get("eventId") in event_ids]
    say.table(["event", "type", "outcome", "why"],
              [[d["eventId"][:18], d["type"], d["outcome"], d.get("reason") or ""] for d in reversed(recent)])
    duplicates = sum(1 for d in recent if d["outcome"] == "duplicate")
    say.ok(f"{duplicates} duplicate deliveries recognised; one Paid transition, one payment record")

    say.step("The link is deactivated so it cannot be paid again")
    await wait_for("the link to be deactivated", lambda: _link_active(sandbox, link_id), lambda active: not active)
    say.ok(f"{link_id} active=false in Stripe")

    await lifecycle.show_receipt(say, kube, sandbox, namespace, invoices[0])
    await lifecycle.show_partial_refund(say, kube, sandbox, namespace, invoices[0])


async def _summary(say: Narrator, sandbox: Sandbox, kube: Kube, namespace: str, invoices: list[str],
                   integration: Callable[[], Awaitable[Any]]) -> None:
    say.step("Summary")
    rows = []
    for name in invoices:
        obj = await kube.get_object("invoices", namespace, name) or {}
        st = obj.get("status", {})
        rows.append([name, st.get("phase", ""), st.get("amountDue", {}).get("display", ""),
                     (st.get("amountRefunded") or {}).get("display", "-"),
                     (st.get("payment") or {}).get("providerPaymentId", "-"),
                     str((st.get("paymentLink") or {}).get("active", "-")).lower()])
    say.table(["invoice", "phase", "total", "refunded", "payment", "link active"], rows)
    counts = ((await integration() or {}).get("status", {}).get("deliveries") or {}).get("counts", {})
    say.detail("", "deliveries: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    say.detail(f"emails sent: {lifecycle.email_counts(sandbox)}; payment links created: "
               f"{sum(sandbox.stripe.links_created_by_invoice.values())}; total time {say.elapsed().strip()}")


async def _count(sandbox: Sandbox) -> int:
    return len(sandbox.smtp.messages)


async def _link_active(sandbox: Sandbox, link_id: str) -> bool:
    return bool(sandbox.stripe.payment_links[link_id].obj["active"])
