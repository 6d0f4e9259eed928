"""Links first (issue 18, measures 2 and 3): a burst of new invoices on an integration that also has thousands of
open invoices whose reconciliation competes for the same Stripe budget, against the same burst alone
(``bench.links``' run, taken just before in the same ``make bench``).

The open invoices are clones of one invoice the operator itself took to Open (its link, email record, kopf's
annotations and finalizer), written straight into the emulator (as ``bench.memory`` does), so they all point at a
real link of the integration's stand-in account. The operator runs with a short ``reconcileInterval``, so their
reconciliation passes (whatever the tree does per pass: today a Checkout Session listing and a link check per
invoice) keep asking for the budget throughout the burst; the burst starts once they do and the operator has seen
them all (an invoice created after them is Open and emailed: otherwise the burst would queue behind 40,000 watch
events and measure that).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from bench.links import bench_links, examples
from bench.memory import _clone, until_idle
from fluxrate import API_GROUP
from fluxrate.kube import Kube
from fluxrate_sandbox.demo.flow import apply
from fluxrate_sandbox.processes import WaitTimeout, wait_for
from fluxrate_sandbox.stack import Sandbox

LINK_CREATE = ("POST", "/v1/payment_links")
DIFFBASE = f"operator.{API_GROUP}/last-handled-configuration"


@dataclass(frozen=True)
class LinksFirstSizes:
    open_invoices: int = 20_000
    reconcile_interval_s: float = 60.0  # 20,000 invoices a minute ask far more than 25 requests/s
    min_background: int = 250  # background Stripe requests seen before the burst (reconciliation competes)
    settle_timeout_s: float = 180.0
    idle_cpu_share: float = 0.5  # "filed them all": the operator under half a core over 3 s (reconciling)


QUICK_LINKS_FIRST = LinksFirstSizes(open_invoices=40, reconcile_interval_s=4.0, min_background=8,
                                    settle_timeout_s=30.0)


def background_requests(sandbox: Sandbox) -> int:
    """Stripe requests of the stand-in's that are not link creations (every account)."""
    return sum(n for (method, path, _), n in sandbox.stripe.request_counts.items() if (method, path) != LINK_CREATE)


def _seeded(obj: dict[str, Any] | None) -> bool:
    """Open, emailed, and kopf's own patches on it (so its clones are resumed as handled)."""
    if obj is None:
        return False
    status, meta = obj.get("status") or {}, obj["metadata"]
    return status.get("phase") == "Open" and bool((status.get("notification") or {}).get("sentAt")) \
        and DIFFBASE in (meta.get("annotations") or {}) and bool(meta.get("finalizers"))


def preloader(sandbox: Sandbox, kube: Kube, sizes: LinksFirstSizes) -> Any:
    async def preload(namespace: str, pid: int) -> dict[str, Any]:
        _, template = examples("unused")
        seed = {**template, "metadata": {"name": "seed", "namespace": namespace}}
        await apply(kube, namespace, seed)
        source = await wait_for("the seed invoice to be Open and emailed",
                                lambda: kube.get_object("invoices", namespace, "seed"), _seeded, timeout=60)
        started = time.perf_counter()
        for index in range(sizes.open_invoices):
            _clone(sandbox, source, namespace, f"open-{index:05d}")
            if index % 100 == 99:
                await asyncio.sleep(0)  # the emulator (this process) streams the watch events meanwhile
        clone_s = round(time.perf_counter() - started, 2)
        before = background_requests(sandbox)
        # Watch events arrive in order: once the operator took an invoice created after the clones to Open and
        # emailed it, it has seen every clone (the burst does not queue behind their ADDED events).
        await apply(kube, namespace, {**template, "metadata": {"name": "sentinel", "namespace": namespace}})
        await wait_for("the operator to see every clone", lambda: kube.get_object("invoices", namespace, "sentinel"),
                       _seeded, timeout=sizes.settle_timeout_s, interval=0.5)
        try:
            await wait_for("reconciliation to ask Stripe", lambda: background_requests(sandbox) - before,
                           lambda n: n >= sizes.min_background, timeout=sizes.settle_timeout_s, interval=0.5)
        except WaitTimeout:
            pass  # recorded below: the burst then measures less competition than asked for
        settled = await until_idle(pid, 3.0, sizes.idle_cpu_share, sizes.settle_timeout_s)
        waited = time.perf_counter() - started - clone_s
        return {"open_invoices": sizes.open_invoices, "clone_s": clone_s, "settled": settled,
                "background_requests_before_burst": background_requests(sandbox) - before,
                "background_per_s_before_burst": round((background_requests(sandbox) - before) / waited, 1)}

    return preload


async def bench_links_first(sandbox: Sandbox, kube: Kube, state_dir: Any, count: int, alone: dict[str, Any],
                            sizes: LinksFirstSizes) -> dict[str, Any]:
    """The burst of ``count`` with ``sizes.open_invoices`` open beside it; ``alone``: ``bench_links``' result."""
    background = background_requests(sandbox)
    loaded = await bench_links(sandbox, kube, state_dir, count, tag="-with-open", before_burst=preloader(
        sandbox, kube, sizes), operator_env={"FLUXRATE_RECONCILE_INTERVAL": str(sizes.reconcile_interval_s)},
        timeout=300.0)
    during = Counter({k: v for k, v in loaded["stripe_requests_by_kind"].items()
                      if not k.startswith(" ".join(LINK_CREATE) + " ")})
    loaded["background_requests_during_burst"] = sum(during.values())
    loaded["background_requests_total"] = background_requests(sandbox) - background
    ratio = round(alone["all_open_s"] / loaded["all_open_s"], 3) if loaded["all_open_s"] else None
    return {"sizes": asdict(sizes), "alone_all_open_s": alone["all_open_s"], "loaded": loaded,
            "alone_over_loaded": ratio}
