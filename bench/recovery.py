"""Stripe requests per reconciliation pass (issue 18, Build 1): one integration with 20 open invoices, then with
20,000, against the operator process (``python -m fluxrate operator``) with a short ``reconcileInterval``.

Missed webhooks are recovered through Stripe's Events API (``fluxrate.operator.recovery``): a pass lists the events
Stripe did not deliver and the payment links updated since its cursor, so its cost follows the events, not the open
invoices. The open invoices are clones of one the operator took to Open (its link, email record, kopf's annotations
and finalizer), written straight into the emulator (as ``bench.memory`` does); an invoice created after them and
seen Open says the operator has seen them all. Every Stripe request of the stand-in during a few intervals is
counted (no payments happen meanwhile), divided by the passes.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from bench.links import OPERATOR_LOG_LEVEL, examples
from bench.memory import _clone, until_idle
from fluxrate.kube import Kube
from fluxrate_sandbox.demo.flow import apply, condition
from fluxrate_sandbox.processes import process, wait_for
from fluxrate_sandbox.stack import Sandbox


@dataclass(frozen=True)
class RecoverySizes:
    few: int = 20
    many: int = 20_000
    interval_s: float = 15.0  # the reconcile interval: one events recovery pass each
    passes: int = 4  # intervals counted at each size
    settle_timeout_s: float = 240.0
    idle_cpu_share: float = 0.5


QUICK_RECOVERY = RecoverySizes(few=5, many=60, interval_s=3.0, passes=2, settle_timeout_s=60.0)


def _open_and_emailed(obj: dict[str, Any] | None) -> bool:
    status = (obj or {}).get("status") or {}
    return status.get("phase") == "Open" and bool((status.get("notification") or {}).get("sentAt")) \
        and bool(((obj or {}).get("metadata") or {}).get("finalizers"))


async def _seen_all(kube: Kube, namespace: str, template: dict[str, Any], name: str, timeout: float) -> None:
    """Watch events arrive in order: an invoice created after the clones, Open and emailed, says all were seen."""
    await apply(kube, namespace, {**template, "metadata": {"name": name, "namespace": namespace}})
    await wait_for(f"{name} to be Open", lambda: kube.get_object("invoices", namespace, name), _open_and_emailed,
                   timeout=timeout, interval=0.5)


async def _per_pass(sandbox: Sandbox, sizes: RecoverySizes, open_invoices: int) -> dict[str, Any]:
    before = Counter(sandbox.stripe.request_counts)
    started = time.perf_counter()
    await asyncio.sleep(sizes.passes * sizes.interval_s)
    during = Counter(sandbox.stripe.request_counts) - before
    seconds = time.perf_counter() - started
    return {"open_invoices": open_invoices, "seconds": round(seconds, 1), "passes": sizes.passes,
            "stripe_requests": sum(during.values()),
            "per_pass": round(sum(during.values()) / sizes.passes, 2),
            "by_kind": {f"{m} {p} {s}": n for (m, p, s), n in during.most_common()}}


async def bench_recovery(sandbox: Sandbox, kube: Kube, state_dir: Any, sizes: RecoverySizes) -> dict[str, Any]:
    namespace = "bench-recovery"
    _, key = sandbox.stripe.add_account()
    setup, template = examples(key)
    for doc in setup:
        await apply(kube, namespace, doc)
    integration = next(d["metadata"]["name"] for d in setup if d["kind"] == "StripeIntegration")
    env = {**sandbox.env(), "FLUXRATE_LOG_LEVEL": OPERATOR_LOG_LEVEL, "FLUXRATE_WATCH_NAMESPACES": namespace,
           "FLUXRATE_RECONCILE_INTERVAL": str(sizes.interval_s)}
    async with process("operator", ["operator"], env, state_dir / f"{namespace}.log") as operator:
        await wait_for("the integration to be Ready",
                       lambda: kube.get_object("stripeintegrations", namespace, integration),
                       lambda o: (condition(o, "Ready") or {}).get("status") == "True", timeout=60)
        await _seen_all(kube, namespace, template, "seed", 60)
        source = await kube.get_object("invoices", namespace, "seed") or {}
        for index in range(sizes.few - 2):  # the seed and the sentinel are open too
            _clone(sandbox, source, namespace, f"few-{index:05d}")
        await _seen_all(kube, namespace, template, "sentinel-few", sizes.settle_timeout_s)
        await asyncio.sleep(sizes.interval_s)  # every one past its first reconciliation
        few = await _per_pass(sandbox, sizes, sizes.few)
        started = time.perf_counter()
        for index in range(sizes.many - sizes.few - 1):
            _clone(sandbox, source, namespace, f"many-{index:05d}")
            if index % 100 == 99:
                await asyncio.sleep(0)  # the emulator (this process) streams the watch events meanwhile
        clone_s = round(time.perf_counter() - started, 2)
        await _seen_all(kube, namespace, template, "sentinel-many", sizes.settle_timeout_s)
        settled = await until_idle(operator.pid, 3.0, sizes.idle_cpu_share, sizes.settle_timeout_s)
        await asyncio.sleep(sizes.interval_s)
        many = await _per_pass(sandbox, sizes, sizes.many)
        status = (await kube.get_object("stripeintegrations", namespace, integration) or {}).get("status") or {}
    ratio = round(many["per_pass"] / few["per_pass"], 2) if few["per_pass"] else None
    return {"sizes": asdict(sizes), "few": few, "many": {**many, "clone_s": clone_s, "settled": settled},
            "many_over_few": ratio, "events_recovery": status.get("eventsRecovery")}
