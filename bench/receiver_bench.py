"""Webhook receiver: latency and throughput per kind of delivery and concurrency, Kubernetes requests per
delivery, and RSS before/after many deliveries; the receiver in this process or as ``python -m fluxrate receiver``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench.proc import cpu_seconds, peak_rss_mib, rss_mib
from bench.tenant import OpenInvoice, Tenant, create_open_invoices, create_tenant
from bench.webhook_load import Delivery, deliveries, drive, forged, ignored_event, paid_session_event, sign
from fluxrate import WEBHOOK_PATH_PREFIX
from fluxrate.kube import Kube
from fluxrate.sandbox.processes import free_port, process, wait_for
from fluxrate.sandbox.stack import Sandbox
from fluxrate.webhook_receiver.runner import running_receiver
from fluxrate.webhook_receiver.settings import ReceiverSettings

SCENARIOS = ("signature_failed", "ignored", "applied", "duplicate")


@dataclass(frozen=True)
class ReceiverSizes:
    per_cell: int = 400  # deliveries per (scenario, concurrency) for signature failures, ignored and duplicates
    applied_per_cell: int = 150  # applied payments per concurrency (one fresh invoice each)
    concurrencies: tuple[int, ...] = (1, 8, 32)
    cell_budget_s: float = 20.0  # a cell stops early after this
    soak_rounds: int = 4  # memory: rounds of mixed deliveries, RSS after each
    soak_per_round: int = 1500


@dataclass
class Target:
    url: str  # the tenant's webhook URL
    pid: int
    receiver: Any = None  # the in-process Receiver (for its bounded structures), None for a process


@contextlib.asynccontextmanager
async def receiver_target(mode: str, sandbox: Sandbox, tenant: Tenant, state_dir: Path) -> AsyncIterator[Target]:
    path = f"{WEBHOOK_PATH_PREFIX}/{tenant.namespace}/{tenant.integration}"
    if mode == "inprocess":
        async with running_receiver(ReceiverSettings(host="127.0.0.1", port=0)) as running:
            yield Target(running.url + path, os.getpid(), running.receiver)
        return
    port = free_port()
    env = {**sandbox.env(), "FLUXRATE_RECEIVER_HOST": "127.0.0.1", "FLUXRATE_RECEIVER_PORT": str(port),
           "FLUXRATE_RECEIVER_LOG_LEVEL": "INFO"}
    async with process("receiver", ["receiver"], env, state_dir / "receiver.log") as proc:
        base = f"http://127.0.0.1:{port}"
        await wait_for("the receiver to be ready", lambda: _ready(base), lambda status: status == 200)
        yield Target(base + path, proc.pid)


async def _ready(base: str) -> int:
    try:
        async with aiohttp.ClientSession() as http, http.get(f"{base}/readyz") as answer:
            return answer.status
    except aiohttp.ClientError:
        return 0


def _repeat(items: Sequence[Delivery], count: int) -> list[Delivery]:
    return [items[i % len(items)] for i in range(count)] if items else []


async def _cell(sandbox: Sandbox, target: Target, items: Sequence[Delivery], concurrency: int,
                budget: float) -> dict[str, Any]:
    before, cpu_before = sandbox.kube.emulator.request_count, cpu_seconds(target.pid)
    result = await drive(target.url, items, concurrency, budget)
    await asyncio.sleep(0.05)  # background Events of the last deliveries
    kube_requests = sandbox.kube.emulator.request_count - before
    cpu = (cpu_seconds(target.pid) or 0.0) - (cpu_before or 0.0)
    count = len(result.latencies)
    return {**result.summary(), "kube_requests": kube_requests,
            "kube_requests_per_delivery": round(kube_requests / count, 3) if count else None,
            # the receiver's own CPU per delivery; only meaningful when it runs as its own process
            "receiver_cpu_ms_per_delivery": round(cpu * 1000 / count, 3) if count and target.receiver is None
            else None}


async def bench_receiver(mode: str, sandbox: Sandbox, kube: Kube, sizes: ReceiverSizes,
                         state_dir: Path) -> dict[str, Any]:
    namespace = f"bench-rx-{mode}"
    _, key = sandbox.stripe.add_account()
    tenant = await create_tenant(kube, namespace, key)
    setup_started = time.perf_counter()
    invoices: dict[int, list[OpenInvoice]] = {}
    for c in sizes.concurrencies:
        invoices[c] = await create_open_invoices(kube, tenant, f"inv-c{c}", sizes.applied_per_cell)
    setup_s = time.perf_counter() - setup_started

    rows: list[dict[str, Any]] = []
    memory: dict[str, Any] = {}
    async with receiver_target(mode, sandbox, tenant, state_dir) as target:
        warm = deliveries([ignored_event(i) for i in range(20)], tenant.signing_secret, ("ignored", "unmatched"))
        await drive(target.url, warm, 1, 10)
        memory["rss_mib_start"] = rss_mib(target.pid)
        applied_bodies: list[str] = []
        for scenario in SCENARIOS:
            for c in sizes.concurrencies:
                items = _scenario_items(scenario, c, sizes, tenant, invoices, applied_bodies)
                row = await _cell(sandbox, target, items, c, sizes.cell_budget_s)
                rows.append({"mode": mode, "scenario": scenario, "concurrency": c, **row})
        memory["rss_mib_after_scenarios"] = rss_mib(target.pid)
        memory["soak"] = await _soak(target, tenant, applied_bodies, sizes)
        memory["rss_mib_end"] = rss_mib(target.pid)
        memory["peak_rss_mib"] = peak_rss_mib(target.pid)
        memory["deliveries_total"] = sum(r["count"] for r in rows) + sizes.soak_rounds * sizes.soak_per_round + 20
        if target.receiver is not None:
            memory["dedupe_entries"] = len(target.receiver.recent)
            memory["dedupe_capacity"] = target.receiver.recent.capacity
            await target.receiver.recorder.flush()
    memory["rss_includes"] = ("this process: the receiver, the sandbox (Kubernetes API, Stripe stand-in) and the "
                              "load client" if mode == "inprocess" else "the receiver process only")
    integration = await kube.get_object("stripeintegrations", namespace, tenant.integration) or {}
    stored = (integration.get("status") or {}).get("deliveries") or {}
    memory["status_recent_entries"] = len(stored.get("recent") or [])
    return {"mode": mode, "setup": {"invoices": sum(len(v) for v in invoices.values()), "seconds": round(setup_s, 2)},
            "rows": rows, "memory": memory, "status_counts": stored.get("counts")}


def _scenario_items(scenario: str, concurrency: int, sizes: ReceiverSizes, tenant: Tenant,
                    invoices: dict[int, list[OpenInvoice]], applied_bodies: list[str]) -> list[Delivery]:
    secret = tenant.signing_secret
    if scenario == "signature_failed":
        return forged(sizes.per_cell)
    if scenario == "ignored":
        return deliveries([ignored_event(i) for i in range(sizes.per_cell)], secret, ("ignored", "unmatched"))
    if scenario == "applied":
        items = deliveries([paid_session_event(inv) for inv in invoices[concurrency]], secret, "applied")
        applied_bodies.extend(item.body for item in items)
        return items
    # duplicates: redeliveries of events applied above, signed afresh as Stripe does on a retry
    return _repeat([Delivery(body, sign(body, secret), "duplicate") for body in applied_bodies], sizes.per_cell)


async def _soak(target: Target, tenant: Tenant, applied_bodies: Sequence[str], sizes: ReceiverSizes
                ) -> list[dict[str, Any]]:
    """Rounds of mixed deliveries (forged, ignored, duplicates) at concurrency 32; RSS after each."""
    rounds = []
    dupes = [Delivery(body, sign(body, tenant.signing_secret), "duplicate") for body in applied_bodies]
    for index in range(sizes.soak_rounds):
        third = sizes.soak_per_round // 3
        mixed = [*forged(third), *deliveries([ignored_event(i) for i in range(third)], tenant.signing_secret,
                                             ("ignored", "unmatched")),
                 *_repeat(dupes, sizes.soak_per_round - 2 * third)]
        result = await drive(target.url, mixed, 32, 60)
        rounds.append({"round": index + 1, "deliveries": len(result.latencies), "per_s": result.summary()["per_s"],
                       "unexpected": result.unexpected, "rss_mib": rss_mib(target.pid)})
    return rounds
