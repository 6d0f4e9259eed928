"""Sharding (issue 18, Build 5): payment-link throughput of 3 operator shards on 3 integrations, against 1 operator.

Three namespaces, one per shard of 3 (``exactly_per_shard``), each with the examples' Secret and StripeIntegration
on a fresh stand-in account (its own 25 requests/s bucket, as each Stripe account has). N invoices per namespace
are written at once into the emulator; a watch per namespace records when each is first seen Open with its link.
The same run is made with one operator process (``shards: 1``) and with three (``shards: 3``), on fresh namespaces.

The Stripe bound is the same for both: 3 x 25 links/s (one Stripe request per link). One process does the three
integrations' work on one core; three shards have three processes, so the ratio shows how much of one operator's
time the work takes, on this machine (with 2 cores, three processes cannot all run at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.links import STRIPE_TEST_RATE, examples
from bench.proc import cpu_seconds, peak_rss_mib
from bench.stats import latency_summary
from bench.watch import first_seen, is_open
from fluxrate import API_GROUP, API_VERSION
from fluxrate.kube import Kube
from fluxrate_sandbox.demo.flow import apply, condition
from fluxrate_sandbox.processes import wait_for
from fluxrate_sandbox.shards import ShardedOperators, exactly_per_shard
from fluxrate_sandbox.stack import Sandbox

SHARDS = 3
QUICK_PER_INTEGRATION = 4
PER_INTEGRATION = 300


async def _setup(sandbox: Sandbox, kube: Kube, namespaces: list[str]) -> tuple[dict[str, Any], str]:
    template: dict[str, Any] = {}
    integration = ""
    for ns in namespaces:
        _, key = sandbox.stripe.add_account()
        setup, template = examples(key)
        for doc in setup:
            await apply(kube, ns, doc)
        integration = next(d["metadata"]["name"] for d in setup if d["kind"] == "StripeIntegration")
    return template, integration


async def _one_run(sandbox: Sandbox, kube: Kube, state_dir: Path, shards: int, per: int,
                   timeout: float, *, only_first: bool = False) -> dict[str, Any]:
    """``only_first``: the invoices all in shard 0's namespace (what the others pay for events not theirs)."""
    namespaces = exactly_per_shard(SHARDS, prefix=f"bench-shards{shards}{'-first' if only_first else ''}")
    busy = namespaces[:1] if only_first else namespaces
    template, integration = await _setup(sandbox, kube, namespaces)
    operators = ShardedOperators({**sandbox.env(), "FLUXRATE_LOG_LEVEL": "INFO"}, state_dir)
    await operators.start(shards)
    try:
        for ns in namespaces:
            await wait_for(f"integration {ns} Ready", lambda ns=ns: kube.get_object("stripeintegrations", ns,
                                                                                  integration),
                           lambda o: (condition(o, "Ready") or {}).get("status") == "True", timeout=90)
        await asyncio.sleep(1.0)
        cpu_before = [cpu_seconds(p.pid) or 0.0 for p in operators.processes]
        limited_before = sandbox.stripe.rate_limited
        created: dict[str, float] = {}
        async with contextlib.AsyncExitStack() as stack:
            seen = [await stack.enter_async_context(first_seen(sandbox, ns, is_open)) for ns in busy]
            for i in range(per):
                for ns in busy:
                    doc = copy.deepcopy(template)
                    doc["metadata"] = {"name": f"inv-{i:05d}", "namespace": ns}
                    sandbox.kube.emulator.create_object(doc)
                    created[f"{ns}/inv-{i:05d}"] = time.time()
                if i % 20 == 19:
                    await asyncio.sleep(0)
            await asyncio.gather(*(s.wait(per, timeout) for s in seen))
        opened = {f"{ns}/{name}": at for ns, s in zip(busy, seen, strict=True) for name, at in s.at.items()}
        await asyncio.sleep(2.0)  # the last events (emails, kopf's annotations) handled
        cpu = [round((cpu_seconds(p.pid) or 0.0) - before, 2) for p, before in zip(operators.processes, cpu_before,
                                                                                   strict=True)]
        rss = [peak_rss_mib(p.pid) for p in operators.processes]
    finally:
        await operators.stop()
    first = min(created.values())
    elapsed = (max(opened.values()) if opened else time.time()) - first
    uids = [o["metadata"]["uid"] for ns in busy
            for o in sandbox.kube.emulator.list_objects(f"{API_GROUP}/{API_VERSION}", "invoices", ns)]
    links = Counter(sandbox.stripe.links_created_by_invoice[uid] for uid in uids)
    total = per * len(busy)
    return {
        "shards": shards, "integrations": len(namespaces), "invoices": total, "open": len(opened),
        "all_open_s": round(elapsed, 2), "links_per_s": round(len(opened) / elapsed, 1) if elapsed > 0 else None,
        "bound_links_per_s": STRIPE_TEST_RATE * len(namespaces),
        "finalize_to_open": latency_summary([opened[k] - created[k] for k in opened], elapsed),
        "invoices_with_one_link": links.get(1, 0), "invoices_with_more_links": sum(n for k, n in links.items()
                                                                                    if k > 1),
        "stripe_429": sandbox.stripe.rate_limited - limited_before,
        "operator_cpu_s": cpu, "operator_peak_rss_mib": rss,
    }


async def bench_shards(sandbox: Sandbox, kube: Kube, state_dir: Path, per_integration: int = PER_INTEGRATION,
                       timeout: float = 300.0) -> dict[str, Any]:
    one = await _one_run(sandbox, kube, state_dir, 1, per_integration, timeout)
    three = await _one_run(sandbox, kube, state_dir, SHARDS, per_integration, timeout)
    ratio = round(three["links_per_s"] / one["links_per_s"], 2) if one["links_per_s"] and three["links_per_s"] \
        else None
    # what a shard spends on the other shards' invoices (their watch events, decoded and dropped) against its own
    first = await _one_run(sandbox, kube, state_dir, SHARDS, per_integration, timeout, only_first=True)
    own_ms, other_ms = (round(cpu * 1000 / per_integration, 2) for cpu in (first["operator_cpu_s"][0],
                                                                            max(first["operator_cpu_s"][1:])))
    return {"one": one, "three": three, "throughput_3_over_1": ratio, "only_shard_0": first,
            "cpu_ms_per_own_invoice": own_ms, "cpu_ms_per_other_shards_invoice": other_ms}
