"""The sandbox Kubernetes API, as fluxrate's client sees it: Invoice creates, status patches and lists per second.

Client (kubernetes_asyncio, the one fluxrate uses) and server (the emulator: schema, CEL validation, TLS) share
this process and its event loop, so these figures are the sandbox's, not a real API server's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from bench.stats import latency_summary
from bench.tenant import bounded, invoice_spec
from fluxrate import API_GROUP, API_VERSION
from fluxrate.kube import Kube
from fluxrate.models import amount_due


@dataclass(frozen=True)
class KubeSizes:
    writes: int = 300  # creates, then as many status patches, per concurrency
    lists: int = 30  # lists of the whole namespace per concurrency
    concurrencies: tuple[int, ...] = (1, 8)


async def _timed(items: list[Any], work: Any, concurrency: int) -> dict[str, Any]:
    latencies: list[float] = []

    async def one(item: Any) -> None:
        started = time.perf_counter()
        await work(item)
        latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await bounded(items, one, concurrency)
    return latency_summary(latencies, time.perf_counter() - started)


async def bench_kube(kube: Kube, sizes: KubeSizes) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    spec = invoice_spec("x", "bench-stripe")
    body_spec, due = spec.to_k8s(), amount_due(spec).to_k8s()
    for c in sizes.concurrencies:
        namespace = f"bench-kube-c{c}"
        names = [f"inv-{i:05d}" for i in range(sizes.writes)]

        async def create(name: str, namespace: str = namespace) -> None:
            await kube.custom.create_namespaced_custom_object(API_GROUP, API_VERSION, namespace, "invoices", {
                "apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": "Invoice",
                "metadata": {"name": name, "namespace": namespace}, "spec": body_spec})

        async def patch(name: str, namespace: str = namespace) -> None:
            await kube.patch_status("invoices", namespace, name, {"phase": "Open", "amountDue": due})

        async def list_all(_: int, namespace: str = namespace) -> None:
            await kube.custom.list_namespaced_custom_object(API_GROUP, API_VERSION, namespace, "invoices")

        rows.append({"operation": "create invoice", "concurrency": c, **await _timed(names, create, c)})
        rows.append({"operation": "patch invoice status", "concurrency": c, **await _timed(names, patch, c)})
        rows.append({"operation": f"list {sizes.writes} invoices", "concurrency": c,
                     **await _timed(list(range(sizes.lists)), list_all, c)})
    return rows
