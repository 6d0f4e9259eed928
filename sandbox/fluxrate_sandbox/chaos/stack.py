"""One chaos stack: the sandbox in this process, the operator and the receiver as separate processes.

Scenarios reach the product only as a user and Stripe would: objects through the Kubernetes API emulator,
payments through the Stripe stand-in (which signs and delivers webhooks), HTTP requests to the receiver.
Faults come from the sandbox's knobs and OS signals. When the stack ends, what a secret could leak into
(logs, Events, statuses, emails, metrics, HTTP answers) is kept as ``Evidence`` for the secret-hygiene scenario.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

import aiohttp

from fluxrate import API_GROUP, API_VERSION
from fluxrate import conditions as cond
from fluxrate_sandbox.processes import FluxrateProcess, free_port, wait_for
from fluxrate_sandbox.stack import Sandbox, running_sandbox

GROUP_VERSION = f"{API_GROUP}/{API_VERSION}"
Obj = dict[str, Any]


@dataclass
class Evidence:
    """Secret values used in a run, and every text they must not appear in."""

    secrets: set[str] = field(default_factory=set)
    haystacks: dict[str, str] = field(default_factory=dict)

    def add(self, where: str, text: str) -> None:
        self.haystacks[where] = self.haystacks.get(where, "") + text


@dataclass(frozen=True)
class Tenant:
    namespace: str
    integration: str
    key: str
    account_id: str
    endpoint_id: str
    webhook_url: str


@dataclass
class Answers:
    """HTTP answers the suite received from the receiver: counts by class and every body (for the secret search)."""

    by_class: Counter[str] = field(default_factory=Counter)
    bodies: list[str] = field(default_factory=list)

    def record(self, status: int | None, body: str) -> None:
        self.by_class[answer_class(status)] += 1
        self.bodies.append(body)


def answer_class(status: int | None) -> str:
    return "no answer" if status is None else f"{status // 100}xx"


@dataclass
class Stack:
    sandbox: Sandbox
    operator: FluxrateProcess
    receiver: FluxrateProcess
    receiver_base: str
    http: aiohttp.ClientSession
    answers: Answers = field(default_factory=Answers)
    reconcile_interval: float = 3600.0
    started: float = field(default_factory=time.monotonic)  # before any invoice of the scenario exists

    # --- reading objects (in-process reads of the emulator's store: no API load, work during an outage) ----

    def invoices(self, namespace: str) -> list[Obj]:
        return self.sandbox.kube.list_objects(GROUP_VERSION, "invoices", namespace)

    def invoice(self, namespace: str, name: str) -> Obj:
        obj = self.sandbox.kube.get_object(GROUP_VERSION, "invoices", namespace, name)
        assert obj is not None, f"invoice {namespace}/{name} not found"
        return obj

    def integration(self, namespace: str, name: str) -> Obj | None:
        return self.sandbox.kube.get_object(GROUP_VERSION, "stripeintegrations", namespace, name)

    def events(self, namespace: str, reason: str | None = None, kind: str = "Invoice") -> list[Obj]:
        return [e for e in self.sandbox.kube.list_objects("v1", "events", namespace)
                if e.get("involvedObject", {}).get("kind") == kind and (reason is None or e.get("reason") == reason)]

    async def until(self, what: str, check: Callable[[], bool], timeout: float) -> None:
        async def probe() -> bool:
            return check()
        await wait_for(what, probe, bool, timeout=timeout, interval=0.2)

    # --- tenants and invoices, as a user applies them -------------------------------------------------

    async def tenant(self, namespace: str, name: str = "stripe", timeout: float = 60.0) -> Tenant:
        """A namespace with a Secret holding a fresh stand-in key and a StripeIntegration with a managed endpoint."""
        account_id, key = self.sandbox.stripe.add_account()
        self.sandbox.kube.create_object({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"{name}-credentials", "namespace": namespace},
            "type": "Opaque", "stringData": {"secret-key": key},
        })
        self.sandbox.kube.create_object({
            "apiVersion": GROUP_VERSION, "kind": "StripeIntegration",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"secretKeyRef": {"name": f"{name}-credentials", "key": "secret-key"},
                     "webhookEndpoint": {"managed": True}},
        })

        def connected() -> bool:
            obj = self.integration(namespace, name) or {}
            ready = cond.get((obj.get("status") or {}).get("conditions"), "Ready")
            return bool(ready and ready["status"] == "True" and obj["status"].get("webhookEndpointId"))

        await self.until(f"integration {namespace}/{name} to be Ready", connected, timeout)
        status = (self.integration(namespace, name) or {})["status"]
        return Tenant(namespace, name, key, account_id, status["webhookEndpointId"], status["webhookURL"])

    def signing_secrets(self, tenant: Tenant) -> list[str]:
        return self.sandbox.stripe.webhook_endpoints[tenant.endpoint_id].current_secrets()

    def create_invoices(self, tenant: Tenant, count: int, prefix: str = "inv") -> list[str]:
        names = [f"{prefix}-{i:04d}" for i in range(count)]
        for name in names:
            self.sandbox.kube.create_object(invoice_manifest(tenant, name))
        return names

    def finalized(self, namespace: str, names: Iterable[str]) -> dict[str, Obj]:
        """Invoices that are Open with their link emailed."""
        wanted = set(names)
        return {i["metadata"]["name"]: i for i in self.invoices(namespace)
                if i["metadata"]["name"] in wanted and is_finalized(i)}

    async def open_invoices(self, tenant: Tenant, count: int, prefix: str = "inv", timeout: float = 180.0) -> list[Obj]:
        names = self.create_invoices(tenant, count, prefix)
        await self.until(f"{count} invoices in {tenant.namespace} to be Open and emailed",
                         lambda: len(self.finalized(tenant.namespace, names)) == count, timeout)
        done = self.finalized(tenant.namespace, names)
        return [done[name] for name in names]

    def paid(self, namespace: str, names: Iterable[str]) -> list[Obj]:
        wanted = set(names)
        return [i for i in self.invoices(namespace)
                if i["metadata"]["name"] in wanted and (i.get("status") or {}).get("phase") == "Paid"]

    # --- HTTP to the receiver -------------------------------------------------------------------------

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int | None, str]:
        try:
            async with self.http.post(url, data=body, headers=headers) as resp:
                text = await resp.text(errors="replace")
                status: int | None = resp.status
        except aiohttp.ClientError as exc:
            status, text = None, type(exc).__name__
        self.answers.record(status, text)
        return status, text

    async def receiver_ready(self, timeout: float = 60.0) -> None:
        async def ready() -> int:
            try:
                async with self.http.get(f"{self.receiver_base}/readyz") as answer:
                    return answer.status
            except aiohttp.ClientError:
                return 0
        await wait_for("the receiver to be ready", ready, lambda status: status == 200, timeout=timeout)

    async def metrics(self) -> str:
        try:
            async with self.http.get(f"{self.receiver_base}/metrics") as answer:
                return await answer.text()
        except aiohttp.ClientError:
            return ""

    # --- Stripe stand-in figures ----------------------------------------------------------------------

    def delivery_classes(self, since: int = 0, urls: Iterable[str] | None = None) -> Counter[str]:
        wanted = set(urls) if urls is not None else None
        return Counter(answer_class(a.status) for a in self.sandbox.stripe.delivery_log[since:]
                       if wanted is None or a.url in wanted)

    def links_per_invoice(self, invoices: Iterable[Obj]) -> list[int]:
        created = self.sandbox.stripe.links_created_by_invoice
        return [created.get(i["metadata"]["uid"], 0) for i in invoices]

    def emails_per_invoice(self, invoices: Iterable[Obj], kind: str = "link") -> list[int]:
        """How many emails of ``kind`` (``EMAIL_KINDS``) each invoice's customer got."""
        by_recipient = Counter(to for m in self.sandbox.smtp.messages for to in m.rcpt_tos
                               if email_kind(header_id(m.message)) == kind)
        return [by_recipient.get(i["spec"]["customer"]["email"], 0) for i in invoices]


EMAIL_KINDS = ("link", "receipt", "reminder")


def header_id(message: Message) -> str:
    """An email's Message-ID as the operator recorded it: unfolded (a long header may be folded onto a second line,
    which leaves whitespace before the ``<``; RFC 5322 allows it, mail clients drop it)."""
    return "".join(str(message["Message-ID"]).split())


def email_kind(message_id: str) -> str:
    """What an operator email is about, from its Message-ID: a payment link (``<{linkId}.{uid}@...>``), a receipt
    (``<receipt.{paymentId}.{uid}@...>``) or a reminder (``<reminder.{step}.{uid}@...>``)."""
    for kind in ("receipt", "reminder"):
        if message_id.startswith(f"<{kind}."):
            return kind
    return "link"


def is_finalized(obj: Obj) -> bool:
    status = obj.get("status") or {}
    return status.get("phase") == "Open" and bool((status.get("notification") or {}).get("sentAt"))


def payment_projection(obj: Obj) -> str:
    """What a payment can change on an invoice."""
    status = obj.get("status") or {}
    return json.dumps({k: status.get(k) for k in ("phase", "payment", "processedEvents", "lastPaymentError",
                                                   "pendingPayment")}, sort_keys=True)


def invoice_manifest(tenant: Tenant, name: str) -> Obj:
    return {
        "apiVersion": GROUP_VERSION, "kind": "Invoice", "metadata": {"name": name, "namespace": tenant.namespace},
        "spec": {
            "integrationRef": {"name": tenant.integration},
            "customer": {"id": f"cus-{name}", "email": f"billing+{name}@{tenant.namespace}.example",
                         "name": f"Customer {name}"},
            "currency": "USD",
            "lineItems": [{"description": "Platform subscription", "quantity": 1, "unitAmount": "199.00"},
                          {"description": "Extra seats", "quantity": 3, "unitAmount": "12.50"}],
            "state": "Finalized",
        },
    }


@contextlib.asynccontextmanager
async def chaos_stack(state_dir: Path, evidence: Evidence, *, reconcile_interval: float = 3600.0,
                      log_level: str = "DEBUG", webhook_time_scale: float = 0.005,
                      webhook_max_attempts: int = 8) -> AsyncIterator[Stack]:
    """Sandbox + operator + receiver; on exit the processes are stopped and the evidence gathered."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with running_sandbox(state_dir, public_base_url=base, webhook_time_scale=webhook_time_scale,
                               webhook_max_attempts_test=webhook_max_attempts) as sandbox:
        env = {**sandbox.env(), "FLUXRATE_LOG_LEVEL": log_level, "FLUXRATE_RECEIVER_LOG_LEVEL": log_level,
               "FLUXRATE_RECONCILE_INTERVAL": str(reconcile_interval), "FLUXRATE_RETRY_DELAY": "1",
               "FLUXRATE_RECEIVER_HOST": "127.0.0.1", "FLUXRATE_RECEIVER_PORT": str(port),
               "FLUXRATE_RECEIVER_STATUS_FLUSH_INTERVAL": "0.5"}
        operator = FluxrateProcess("operator", ["operator"], env, state_dir / "operator.log")
        receiver = FluxrateProcess("receiver", ["receiver"], env, state_dir / "receiver.log")
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
            stack = Stack(sandbox, operator, receiver, base, http, reconcile_interval=reconcile_interval)
            await operator.start()
            await receiver.start()
            try:
                await stack.receiver_ready()
                yield stack
                await sandbox.stripe.wait_deliveries_idle(120)
            finally:
                metrics = await stack.metrics()
                await asyncio.gather(operator.stop(), receiver.stop())
                gather_evidence(stack, evidence, state_dir.name, metrics)


def gather_evidence(stack: Stack, evidence: Evidence, label: str, metrics: str) -> None:
    sandbox = stack.sandbox
    evidence.secrets.update(sandbox.stripe.issued_secrets)  # deleted endpoints' and rolled secrets included
    for process in (stack.operator, stack.receiver):
        if process.log_file.exists():
            evidence.add(f"logs ({label} {process.name})", process.log_file.read_text(errors="replace"))
    evidence.add(f"Events ({label})", json.dumps(sandbox.kube.list_objects("v1", "events")))
    for plural in ("invoices", "stripeintegrations"):
        statuses = [o.get("status") for o in sandbox.kube.list_objects(GROUP_VERSION, plural)]
        evidence.add(f"{plural} status ({label})", json.dumps(statuses))
    evidence.add(f"emails ({label})", "\n".join(m.message.as_string() for m in sandbox.smtp.messages))
    evidence.add(f"metrics ({label})", metrics)
    evidence.add(f"HTTP answers ({label})", "\n".join(stack.answers.bodies))
