"""Receiver ceiling and webhook -> Paid latency (issue 10, measures 1 and 2).

One load generator process (``bench.loadgen``) drives, in turn, closed loop at the same concurrency:
(a) a bare aiohttp app that answers 200; (b) the receiver on already-applied events (verify + dedupe, no
Kubernetes write); (c) the receiver applying new payments (verify + match + status write on the sandbox API);
(d) the sandbox API itself, sent the very status patches the receiver writes in (c). Then, open loop at half of
(c)'s rate, the time from each delivery being due to a watch on the sandbox API seeing its invoice Paid.

``bench_ceiling_real`` takes (c), (d) and webhook -> Paid the same way with the real kube-apiserver
(``fluxrate_sandbox.real_kube``) in place of the emulator: the receiver's $KUBECONFIG points at it, (d)'s patches
go to it, the invoices are seeded and watched there.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.servers import bare_app_process, generate, receiver_process
from bench.stats import latency_summary
from bench.tenant import OpenInvoice, create_tenant, seed_open_invoices, seed_open_invoices_real
from bench.watch import first_seen, is_paid
from bench.webhook_load import Delivery, as_requests, deliveries, forged, ignored_event, paid_session_event, sign
from fluxrate import API_GROUP, API_VERSION, WEBHOOK_PATH_PREFIX
from fluxrate.kube import Kube
from fluxrate.payments import decide, report_from_event
from fluxrate_sandbox.real_kube import RealKube
from fluxrate_sandbox.stack import Sandbox

Profiler = Callable[[str, int], Awaitable[None]]  # (cell name, pid of the process under test)


@dataclass(frozen=True)
class CeilingSizes:
    concurrency: int = 32
    cell_s: float = 8.0  # each closed-loop cell stops sending after this
    cell_requests: int = 60_000  # and after this many requests (cycled), whichever comes first
    applied: int = 4000  # fresh Open invoices for (c), as many for (d): more than a cell can use
    latency_s: float = 10.0  # the open-loop run at half of (c)'s rate
    latency_connections: int = 64  # enough that a request never waits for a free connection


QUICK_CEILING = CeilingSizes(concurrency=4, cell_s=1.0, cell_requests=200, applied=40, latency_s=1.0,
                             latency_connections=8)


def status_patch_request(sandbox: Sandbox, namespace: str, invoice: OpenInvoice) -> dict[str, Any]:
    """The receiver's write for this invoice's payment (``payments.decide``), resourceVersion-guarded as it is."""
    obj = sandbox.kube.emulator.get_object(f"{API_GROUP}/{API_VERSION}", "invoices", namespace, invoice.name)
    assert obj is not None
    return status_patch_of(obj, namespace, invoice)


def status_patch_of(obj: dict[str, Any], namespace: str, invoice: OpenInvoice) -> dict[str, Any]:
    """``status_patch_request`` for the invoice as ``obj`` (read from whichever server holds it)."""
    report = report_from_event(paid_session_event(invoice))
    assert report is not None
    changes = decide(obj, report).changes
    body = {"metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]}, "status": changes}
    return {"method": "PATCH", "path": f"/apis/{API_GROUP}/{API_VERSION}/namespaces/{namespace}/invoices/"
            f"{invoice.name}/status", "headers": {"Content-Type": "application/merge-patch+json"},
            "body": json.dumps(body), "expect": "HTTP 200"}


def _row(name: str, result: dict[str, Any], **extra: Any) -> dict[str, Any]:
    keep = ("count", "wall_s", "per_s", "p50_ms", "p95_ms", "p99_ms", "max_ms", "outcomes", "unexpected",
            "concurrency", "rate")
    return {"cell": name, **{k: result[k] for k in keep}, **extra}


Runner = Callable[..., Awaitable[dict[str, Any]]]


def _runner(work: Path, profiler: Profiler | None, prefix: str = "") -> Runner:
    """The load generator for one cell, with the profiler attached to the process under test when asked."""
    async def run(name: str, url: str, requests: list[dict[str, Any]], pid: int, **options: Any) -> dict[str, Any]:
        async def attach(_: int) -> None:
            if profiler is not None:
                await profiler(f"{prefix}{name}", pid)
        return await generate(url, requests, work / name, on_start=attach, **options)
    return run


async def _webhook_to_paid(run: Runner, server: Any, base: str, path: str, pid: int, namespace: str, tenant: Any,
                           late_set: list[OpenInvoice], rate: float, sizes: CeilingSizes) -> dict[str, Any]:
    """Payments sent at ``rate`` in an open loop; how long each took to show Paid in a watch of ``server``."""
    paid = deliveries([paid_session_event(inv) for inv in late_set], tenant.signing_secret, "applied")
    async with first_seen(server, namespace, is_paid) as watched:
        result = await run("latency", base, as_requests(path, paid), pid, rate=rate,
                           concurrency=sizes.latency_connections, duration=sizes.latency_s + 5)
        await watched.wait(result["count"], 10)
    seen = watched.at
    to_paid = [seen[inv.name] - sent for inv, sent in zip(late_set, result["sent_at"], strict=True)
               if sent is not None and inv.name in seen]
    return {"rate_per_s": rate, "deliveries": result["count"], "paid_seen": len(to_paid),
            "unexpected": result["unexpected"],
            "delivery_answer": {k: result[k] for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")},
            "webhook_to_paid": latency_summary(to_paid, result["wall_s"])}


async def bench_ceiling(sandbox: Sandbox, kube: Kube, state_dir: Path, sizes: CeilingSizes,
                        profiler: Profiler | None = None) -> dict[str, Any]:
    namespace = "bench-ceiling"
    _, key = sandbox.stripe.add_account()
    tenant = await create_tenant(kube, namespace, key)
    path = f"{WEBHOOK_PATH_PREFIX}/{namespace}/{tenant.integration}"
    started = time.perf_counter()
    applied_set = seed_open_invoices(sandbox, tenant, "inv-c", sizes.applied)
    patch_set = seed_open_invoices(sandbox, tenant, "inv-d", sizes.applied)
    setup_s = round(time.perf_counter() - started, 1)
    work = state_dir / "ceiling"
    closed = {"concurrency": sizes.concurrency, "duration": sizes.cell_s}

    run = _runner(work, profiler)

    ignored = as_requests(path, deliveries([ignored_event(i) for i in range(400)], tenant.signing_secret,
                                           ("ignored", "unmatched")))
    rows: dict[str, dict[str, Any]] = {}
    async with bare_app_process(state_dir) as (base, pid):
        bare = [{**r, "expect": "ok"} for r in ignored]
        rows["a"] = _row("(a) bare aiohttp, 200", await run("bare", base, bare, pid, count=sizes.cell_requests,
                                                             **closed))

    latency: dict[str, Any] = {}
    async with receiver_process(sandbox, state_dir, "receiver-ceiling") as (base, pid):
        await generate(base, ignored[:20], work / "warm")
        applied = deliveries([paid_session_event(inv) for inv in applied_set], tenant.signing_secret, "applied")
        result = await run("applied", base, as_requests(path, applied), pid, **closed)
        rows["c"] = _row("(c) receiver, new payment applied", result)
        used = [item for item, done in zip(applied, result["done_at"], strict=True) if done]
        again = [Delivery(item.body, sign(item.body, tenant.signing_secret), "duplicate") for item in used[:400]]
        rows["b"] = _row("(b) receiver, already-applied event", await run(
            "duplicate", base, as_requests(path, again), pid, count=sizes.cell_requests, **closed))
        rows["x"] = _row("(x) receiver, forged signature (400)", await run(
            "forged", base, as_requests(path, forged(400)), pid, count=sizes.cell_requests, **closed))
        patches = [status_patch_request(sandbox, namespace, inv) for inv in patch_set]
        rows["d"] = _row("(d) sandbox API, the same status patch", await run(
            "patch", sandbox.kube.url, patches, 0, token=sandbox.kube.token, **closed))

        rate = max(1.0, round(rows["c"]["per_s"] / 2, 1))
        count = int(rate * sizes.latency_s)
        late_set = seed_open_invoices(sandbox, tenant, "inv-l", count)
        latency = await _webhook_to_paid(run, sandbox, base, path, pid, namespace, tenant, late_set, rate, sizes)
        latency["of_c_per_s"] = rows["c"]["per_s"]

    def ratio(x: str, y: str) -> float | None:
        a, b = rows[x]["per_s"], rows[y]["per_s"]
        return round(a / b, 2) if a and b else None

    return {"setup_s": setup_s, "rows": [rows[k] for k in ("a", "b", "x", "c", "d")],
            "ratios": {"b/a": ratio("b", "a"), "c/d": ratio("c", "d")}, "latency": latency}


async def bench_ceiling_real(sandbox: Sandbox, real: RealKube, kube: Kube, state_dir: Path, sizes: CeilingSizes,
                             profiler: Profiler | None = None) -> dict[str, Any]:
    """(c), (d) and webhook -> Paid against the real kube-apiserver; ``kube`` is a client of it."""
    namespace = "bench-ceiling"
    await real.ensure_namespace(namespace)
    _, key = sandbox.stripe.add_account()
    tenant = await create_tenant(kube, namespace, key)
    path = f"{WEBHOOK_PATH_PREFIX}/{namespace}/{tenant.integration}"
    started = time.perf_counter()
    applied_set, _ = await seed_open_invoices_real(real, tenant, "inv-c", sizes.applied)
    patch_set, patch_objects = await seed_open_invoices_real(real, tenant, "inv-d", sizes.applied)
    setup_s = round(time.perf_counter() - started, 1)
    work = state_dir / "ceiling-real"
    closed = {"concurrency": sizes.concurrency, "duration": sizes.cell_s}

    run = _runner(work, profiler, "real-")

    ignored = as_requests(path, deliveries([ignored_event(i) for i in range(20)], tenant.signing_secret,
                                           ("ignored", "unmatched")))
    rows: dict[str, dict[str, Any]] = {}
    async with receiver_process(sandbox, state_dir, "receiver-ceiling-real", kube_env=real.env()) as (base, pid):
        await generate(base, ignored, work / "warm")
        applied = deliveries([paid_session_event(inv) for inv in applied_set], tenant.signing_secret, "applied")
        rows["c"] = _row("(c) receiver, new payment applied", await run(
            "applied", base, as_requests(path, applied), pid, **closed))
        patches = [status_patch_of(patch_objects[inv.name], namespace, inv) for inv in patch_set]
        rows["d"] = _row("(d) kube-apiserver, the same status patch", await run(
            "patch", real.url, patches, 0, token=real.token, **closed))

        rate = max(1.0, round(rows["c"]["per_s"] / 2, 1))
        count = int(rate * sizes.latency_s)
        late_set, _ = await seed_open_invoices_real(real, tenant, "inv-l", count)
        latency = await _webhook_to_paid(run, real, base, path, pid, namespace, tenant, late_set, rate, sizes)
        latency["of_c_per_s"] = rows["c"]["per_s"]

    c, d = rows["c"]["per_s"], rows["d"]["per_s"]
    return {"setup_s": setup_s, "rows": [rows["c"], rows["d"]],
            "ratios": {"c/d": round(c / d, 2) if c and d else None}, "latency": latency}
