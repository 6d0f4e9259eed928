"""Operator: N finalized invoices created through the API until every one is Open with a link and an email, the
operator running as its own process (``python -m fluxrate operator``) against the Stripe stand-in's 25 req/s
test-mode limit. Reuses the demo's process and apply helpers.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.kube_requests import breakdown, start_log
from bench.proc import cpu_seconds, peak_rss_mib, rss_mib
from bench.stats import latency_summary
from bench.tenant import bounded
from fluxrate.demo.flow import ROOT_EXAMPLES, apply, condition, load_documents
from fluxrate.kube import Kube
from fluxrate.sandbox.processes import process, wait_for
from fluxrate.sandbox.stack import Sandbox

STRIPE_TEST_RATE = 25.0  # the stand-in's (and Stripe's) test-mode limit, and the operator's default budget


def _ready(obj: dict[str, Any]) -> bool:
    status = obj.get("status") or {}
    return (status.get("phase") == "Open" and bool((status.get("paymentLink") or {}).get("url"))
            and bool((status.get("notification") or {}).get("sentAt")))


def _documents(namespace: str, stripe_key: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The examples' Secret and StripeIntegration (managed webhook endpoint), and their USD invoice as template."""
    docs = load_documents(ROOT_EXAMPLES)
    setup = []
    for doc in docs:
        if doc["kind"] == "Secret":
            doc["stringData"] = {key: stripe_key for key in doc.get("stringData", {})}
        if doc["kind"] in ("Secret", "StripeIntegration"):
            setup.append(doc)
    template = next(d for d in docs if d["kind"] == "Invoice" and d["spec"]["currency"] == "USD")
    return setup, template


async def _create_and_wait(kube: Kube, namespace: str, template: dict[str, Any], names: list[str],
                           timeout: float) -> tuple[float, dict[str, float], dict[str, float], dict[str, str]]:
    """Create the invoices (8 at a time) and poll until each is Open with a link and an email.

    Returns (the time creation started, created_at, ready_at, uids) with perf_counter times."""
    uids: dict[str, str] = {}
    created_at: dict[str, float] = {}
    ready_at: dict[str, float] = {}
    wanted = set(names)

    async def create(name: str) -> None:
        doc = copy.deepcopy(template)
        doc["metadata"] = {"name": name, "namespace": namespace}
        await apply(kube, namespace, doc)
        created_at[name] = time.perf_counter()

    t0 = time.perf_counter()
    await bounded(names, create, 8)
    deadline = time.perf_counter() + timeout
    while len(ready_at) < len(names) and time.perf_counter() < deadline:
        listed = await kube.custom.list_namespaced_custom_object("billing.fluxrate.co", "v1alpha1", namespace,
                                                                 "invoices")
        now = time.perf_counter()
        for item in listed["items"]:
            name = item["metadata"]["name"]
            if name in wanted:
                uids[name] = item["metadata"]["uid"]
                if name not in ready_at and _ready(item):
                    ready_at[name] = now
        await asyncio.sleep(0.2)
    return t0, created_at, ready_at, uids


async def bench_operator(count: int, sandbox: Sandbox, kube: Kube, state_dir: Path, *, batches: int = 1,
                         timeout: float = 120.0, settle: float = 3.0) -> dict[str, Any]:
    """``count`` invoices at once (``batches=1``), or in ``batches`` equal bursts, each awaited before the next,
    with the operator's RSS after each (does memory grow with the invoices it holds, or with the burst?)."""
    namespace = f"bench-op-{count}" + (f"-in-{batches}" if batches > 1 else "")
    _, key = sandbox.stripe.add_account()  # its own rate-limit bucket at the stand-in
    setup, template = _documents(namespace, key)
    for doc in setup:
        await apply(kube, namespace, doc)
    integration_name = next(d["metadata"]["name"] for d in setup if d["kind"] == "StripeIntegration")
    env = {**sandbox.env(), "FLUXRATE_LOG_LEVEL": "INFO", "FLUXRATE_WATCH_NAMESPACES": namespace}
    log_file = state_dir / f"{namespace}.log"
    async with process("operator", ["operator"], env, log_file) as operator:
        pid = operator.pid
        started = time.perf_counter()
        await wait_for("the integration to be Ready",
                       lambda: kube.get_object("stripeintegrations", namespace, integration_name),
                       lambda o: (condition(o, "Ready") or {}).get("status") == "True", timeout=60)
        connect_s = time.perf_counter() - started
        rss_idle = rss_mib(pid)
        stripe_requests, rate_limited = sandbox.stripe.count_requests(), sandbox.stripe.rate_limited
        stripe_before = Counter(sandbox.stripe.request_counts)
        emails = len(sandbox.smtp.messages)
        kube_requests, cpu_before, own_cpu_before = sandbox.kube.emulator.request_count, cpu_seconds(pid), cpu_seconds()
        start_log(sandbox.kube)

        names = [f"inv-{i:05d}" for i in range(count)]
        size = -(-count // batches)
        created_at: dict[str, float] = {}
        ready_at: dict[str, float] = {}
        uids: dict[str, str] = {}
        busy_s = 0.0
        steps: list[dict[str, Any]] = []
        for first in range(0, count, size):
            t0, created, ready, batch_uids = await _create_and_wait(kube, namespace, template,
                                                                    names[first:first + size], timeout)
            created_at.update(created)
            ready_at.update(ready)
            uids.update(batch_uids)
            busy_s += (max(ready.values()) - t0) if ready else 0.0
            if batches > 1:
                await asyncio.sleep(settle)
                steps.append({"invoices": len(ready_at), "rss_mib": rss_mib(pid)})
        rss_loaded, rss_peak = rss_mib(pid), peak_rss_mib(pid)
        operator_cpu = (cpu_seconds(pid) or 0.0) - (cpu_before or 0.0)
        bench_cpu = (cpu_seconds() or 0.0) - (own_cpu_before or 0.0)
        kube_requests = sandbox.kube.emulator.request_count - kube_requests
        by_kind = breakdown(sandbox.kube)
        await asyncio.sleep(settle if batches == 1 else 0)
        rss_settled = rss_mib(pid)

    links = sum(sandbox.stripe.links_created_by_invoice.get(uid, 0) for uid in uids.values())
    return {
        "invoices": count,
        "batches": batches,
        "ready": len(ready_at),
        "integration_connect_s": round(connect_s, 2),
        "all_open_emailed_s": round(busy_s, 2),  # summed over the batches
        "floor_s": round(count / STRIPE_TEST_RATE, 2),
        "invoices_per_s": round(len(ready_at) / busy_s, 1) if busy_s else None,
        "per_invoice_create_to_ready": latency_summary([ready_at[n] - created_at[n] for n in ready_at], busy_s),
        "payment_links_created": links,
        "emails_sent": len(sandbox.smtp.messages) - emails,
        "stripe_requests": sandbox.stripe.count_requests() - stripe_requests,
        "stripe_429": sandbox.stripe.rate_limited - rate_limited,
        "stripe_requests_by_kind": {f"{m} {p} {st}": n for (m, p, st), n in
                                    (Counter(sandbox.stripe.request_counts) - stripe_before).most_common()},
        "operator_cpu_s": round(operator_cpu, 2),
        # this process: the sandbox (Kubernetes API, Stripe stand-in, SMTP sink) and the polling
        "sandbox_cpu_s": round(bench_cpu, 2),
        "kube_requests": kube_requests,  # by the operator and by this bench's polling (one list per 0.2 s)
        "kube_requests_by_kind": by_kind,  # None when more than the emulator's log holds (2000)
        "rss_mib_idle": rss_idle,
        "rss_mib_with_invoices": rss_loaded,
        "rss_mib_settled": rss_settled,  # a few seconds later, nothing left to do
        "rss_mib_after_each_batch": steps,
        "peak_rss_mib": rss_peak,
    }
