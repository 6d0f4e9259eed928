"""Payment-link throughput (issue 10, measure 3): N invoices finalized at once against the Stripe stand-in
enforcing Stripe's 25 requests/s test-mode limit; time until every one is Open, against the bound N / 25 s.

The operator runs as its own process (``python -m fluxrate operator``) with the examples' StripeIntegration
(managed webhook endpoint) on a fresh stand-in account (its own rate-limit bucket). The N invoices are written
straight into the emulator, as fast as it takes them (a GitOps sync of N manifests), and a watch on the sandbox
API records when each is first seen Open with its link.

With ``real`` (a ``RealKube``), the operator's $KUBECONFIG points at the real kube-apiserver instead: the invoices
are POSTed to it, 32 at a time, and watched there; Kubernetes requests are read from its
``apiserver_request_total`` metric.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.proc import cpu_seconds, peak_rss_mib, rss_mib
from bench.stats import latency_summary
from bench.watch import first_seen, is_open
from fluxrate import API_GROUP, API_VERSION
from fluxrate.kube import Kube
from fluxrate_sandbox.demo.flow import ROOT_EXAMPLES, apply, condition, load_documents
from fluxrate_sandbox.processes import WaitTimeout, process, wait_for
from fluxrate_sandbox.real_kube import RealKube, collection_path
from fluxrate_sandbox.stack import Sandbox

STRIPE_TEST_RATE = 25.0  # the stand-in's (and Stripe's) test-mode limit, and the operator's default budget
Obj = dict[str, Any]
BeforeBurst = Callable[[str, int], Awaitable[dict[str, Any]]]
OPERATOR_LOG_LEVEL = os.environ.get("BENCH_OPERATOR_LOG_LEVEL", "INFO")  # DEBUG shows kopf's every step


def examples(stripe_key: str) -> tuple[list[Obj], Obj]:
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


async def apiserver_requests(real: RealKube) -> int:
    """Requests the real API server has answered on resources (``apiserver_request_total``), leases and the
    discovery and health endpoints left out (the control plane's own background traffic)."""
    async with real.client() as http, http.get("/metrics") as answer:
        text = await answer.text()
    total = 0
    for line in text.splitlines():
        if line.startswith("apiserver_request_total{") and 'component="apiserver"' in line \
                and ',resource=""' not in line and ',resource="leases"' not in line:
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


async def _post_invoices(real: RealKube, docs: list[Obj], created: dict[str, float], concurrency: int = 32) -> None:
    """POST the invoices, ``concurrency`` at a time; ``created[name]``: when the server answered."""
    path = collection_path(f"{API_GROUP}/{API_VERSION}", "invoices", docs[0]["metadata"]["namespace"])
    pending = iter(docs)

    async def worker(http: Any) -> None:
        for doc in pending:
            async with http.post(path, json=doc) as answer:
                if answer.status != 201:
                    raise RuntimeError(f"creating {doc['metadata']['name']}: {answer.status} {await answer.text()}")
            created[doc["metadata"]["name"]] = time.time()

    async with real.client() as http:
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))


async def bench_links(sandbox: Sandbox, kube: Kube, state_dir: Path, count: int, *, timeout: float = 180.0,
                      profiler: Any = None, real: RealKube | None = None, tag: str = "",
                      operator_env: dict[str, str] | None = None, before_burst: BeforeBurst | None = None,
                      ) -> dict[str, Any]:
    """``kube``: a client of the server the operator uses (the emulator, or ``real``). ``before_burst(namespace,
    operator pid)`` runs once the integration is Ready (``bench.links_first`` preloads open invoices there); what
    it returns is kept under ``before_burst``."""
    namespace = f"bench-links-{count}{tag}"
    if real is not None:
        await real.ensure_namespace(namespace)
    _, key = sandbox.stripe.add_account()
    setup, template = examples(key)
    for doc in setup:
        await apply(kube, namespace, doc)
    integration = next(d["metadata"]["name"] for d in setup if d["kind"] == "StripeIntegration")
    env = {**sandbox.env(), **(real.env() if real else {}), "FLUXRATE_LOG_LEVEL": OPERATOR_LOG_LEVEL,
           "FLUXRATE_WATCH_NAMESPACES": namespace, **(operator_env or {})}
    log_name = f"{namespace}-real.log" if real else f"{namespace}.log"
    async with process("operator", ["operator"], env, state_dir / log_name) as operator:
        await wait_for("the integration to be Ready",
                       lambda: kube.get_object("stripeintegrations", namespace, integration),
                       lambda o: (condition(o, "Ready") or {}).get("status") == "True", timeout=60)
        await asyncio.sleep(1.0)  # the managed endpoint's Secret and the Ready status settle
        preloaded = await before_burst(namespace, operator.pid) if before_burst is not None else None
        stripe_before, limited_before = Counter(sandbox.stripe.request_counts), sandbox.stripe.rate_limited
        emails_before = len(sandbox.smtp.messages)
        kube_before = await apiserver_requests(real) if real else sandbox.kube.emulator.request_count
        cpu_before, rss_before = cpu_seconds(operator.pid), rss_mib(operator.pid)
        created: dict[str, float] = {}

        def invoice(i: int) -> Obj:
            doc = copy.deepcopy(template)
            doc["metadata"] = {"name": f"inv-{i:05d}", "namespace": namespace}
            return doc

        async with first_seen(real or sandbox, namespace, is_open) as seen:
            if profiler is not None:
                await profiler("operator-links-real" if real else "operator-links", operator.pid)
            if real is not None:
                await _post_invoices(real, [invoice(i) for i in range(count)], created)
            else:
                for i in range(count):
                    doc = invoice(i)
                    sandbox.kube.emulator.create_object(doc)
                    created[doc["metadata"]["name"]] = time.time()
                    if i % 50 == 49:
                        await asyncio.sleep(0)  # let the API serve the watch while the rest are written
            first = min(created.values())
            await seen.wait(count, timeout)
        opened = seen.at
        finished = max(opened.values()) if opened else time.time()
        stripe_during = Counter(sandbox.stripe.request_counts) - stripe_before
        emails = len(sandbox.smtp.messages) - emails_before
        # Kubernetes requests are counted once every email is recorded (the last of an invoice's requests on its
        # way to Open) and kopf's own patches have followed: requests per invoice, not per second
        with contextlib.suppress(WaitTimeout):
            await wait_for("the emails", lambda: len(sandbox.smtp.messages) - emails_before, lambda n: n >= count,
                           timeout=30, interval=0.2)
        await asyncio.sleep(2.0)
        operator_cpu = (cpu_seconds(operator.pid) or 0.0) - (cpu_before or 0.0)
        rss_after, rss_peak = rss_mib(operator.pid), peak_rss_mib(operator.pid)
        if real is not None:  # less the bench's own: the creates and the LIST that started its watch
            kube_requests = await apiserver_requests(real) - kube_before - count - 1
        else:
            kube_requests = sandbox.kube.emulator.request_count - kube_before

    if real is not None:
        listed = await real.list_objects(f"{API_GROUP}/{API_VERSION}", "invoices", namespace)
    else:
        listed = sandbox.kube.emulator.list_objects(f"{API_GROUP}/{API_VERSION}", "invoices", namespace)
    uids = [o["metadata"]["uid"] for o in listed if o["metadata"]["name"] in created]  # the burst's only
    links = Counter(sandbox.stripe.links_created_by_invoice[uid] for uid in uids)
    elapsed = finished - first
    bound = count / STRIPE_TEST_RATE
    stripe_requests = stripe_during
    return {
        "invoices": count,
        "open": len(opened),
        "write_s": round(max(created.values()) - first, 2),
        "all_open_s": round(elapsed, 2),
        "bound_s": bound,
        "of_bound": round(bound / elapsed, 3) if elapsed > 0 else None,
        "stripe_429": sandbox.stripe.rate_limited - limited_before,
        "finalize_to_open": latency_summary([opened[n] - created[n] for n in opened], elapsed),
        "invoices_with_one_link": links.get(1, 0),
        "invoices_with_more_links": sum(n for k, n in links.items() if k > 1),
        "emails_sent_by_then": emails,  # the email follows Open; not part of this measure
        "stripe_requests": sum(stripe_requests.values()),
        "stripe_requests_by_kind": {f"{m} {p} {s}": n for (m, p, s), n in stripe_requests.most_common()},
        "kube_requests": kube_requests,
        "kube_requests_per_invoice": round(kube_requests / count, 2),
        "before_burst": preloaded,
        "operator_cpu_s": round(operator_cpu, 1),
        "operator_rss_mib": {"before": rss_before, "after": rss_after, "peak": rss_peak},
    }
