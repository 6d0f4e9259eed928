"""Sharding on the sandbox (issue 18, Build 5): three operator processes told their shard as the chart tells them,
invoices over several namespaces with their integrations; then a reshard from 3 to 4 while invoices are being
finalized and paid, rolled one Deployment at a time as ``helm upgrade`` does.

Expected: each namespace handled by its shard only; exactly one payment link and one link email per invoice,
through the reshard; every payment recorded (Paid, the link deactivated, one receipt).
"""

from __future__ import annotations

import asyncio
import random
import re
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from fluxrate.operator.sharding import shard_of
from fluxrate_sandbox.chaos.stack import Stack, Tenant
from fluxrate_sandbox.processes import FluxrateProcess, free_port
from fluxrate_sandbox.shards import ShardedOperators, namespaces_covering
from fluxrate_sandbox.stack import running_sandbox

PER_NAMESPACE = 10  # invoices per namespace and batch
Obj = dict[str, Any]


def owners_in_logs(logs: dict[str, str], namespaces: list[str]) -> dict[str, set[str]]:
    """namespace -> the operator logs that mention one of its objects (kopf prefixes messages with [ns/name])."""
    found: dict[str, set[str]] = {ns: set() for ns in namespaces}
    for log, text in logs.items():
        for ns in set(re.findall(r"\[([a-z0-9-]+)/[a-z0-9.-]+\]", text)) & set(namespaces):
            found[ns].add(log)
    return found


def links(stack: Stack, invoices: list[Obj]) -> Counter[int]:
    return Counter(stack.links_per_invoice(invoices))


async def pay(stack: Stack, invoices: list[Obj]) -> None:
    results = [await stack.sandbox.stripe.pay(i["status"]["paymentLink"]["id"]) for i in invoices]
    await asyncio.gather(*(r.delivered for r in results if getattr(r, "delivered", None) is not None))


def paid_and_settled(stack: Stack, namespace: str, names: set[str]) -> bool:
    """Paid, with the payment recorded, the link deactivated and the receipt sent (the operator's part done)."""
    done = [i for i in stack.invoices(namespace) if i["metadata"]["name"] in names
            and (i.get("status") or {}).get("phase") == "Paid" and (i["status"].get("payment") or {})
            and not (i["status"].get("paymentLink") or {}).get("active")
            and ((i["status"].get("receipt") or {}).get("sentAt"))]
    return len(done) == len(names)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("reshard", ["rolling", "killed"])
async def test_three_shards_then_a_reshard_to_four_under_load(tmp_path: Path, reshard: str) -> None:
    """``rolling``: each Deployment recreated in turn (old and new shards overlap); ``killed``: the three SIGKILLed
    mid-work, then four started."""
    namespaces = namespaces_covering([3, 4])
    moved = [ns for ns in namespaces if shard_of(ns, 3) != shard_of(ns, 4)]
    assert moved, "the reshard must move some namespace to another shard"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with running_sandbox(tmp_path / "sandbox", public_base_url=base, webhook_time_scale=0.005) as sandbox:
        env = {**sandbox.env(), "FLUXRATE_LOG_LEVEL": "DEBUG", "FLUXRATE_RECONCILE_INTERVAL": "3600",
               "FLUXRATE_RETRY_DELAY": "1", "FLUXRATE_RECEIVER_HOST": "127.0.0.1",
               "FLUXRATE_RECEIVER_PORT": str(port), "FLUXRATE_RECEIVER_STATUS_FLUSH_INTERVAL": "0.5"}
        operators = ShardedOperators(env, tmp_path)
        receiver = FluxrateProcess("receiver", ["receiver"], env, tmp_path / "receiver.log")
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
            await operators.start(3)
            await receiver.start()
            stack = Stack(sandbox, operators.processes[0], receiver, base, http)
            try:
                await stack.receiver_ready()
                await scenario(stack, operators, namespaces, reshard)
            finally:
                await asyncio.gather(operators.stop(), receiver.stop())


async def scenario(stack: Stack, operators: ShardedOperators, namespaces: list[str], reshard: str) -> None:
    tenants: dict[str, Tenant] = {}
    for ns in namespaces:
        tenants[ns] = await stack.tenant(ns)
    first: dict[str, list[Obj]] = {}
    for ns in namespaces:
        first[ns] = await stack.open_invoices(tenants[ns], PER_NAMESPACE, prefix="first", timeout=240)
    everything = [i for batch in first.values() for i in batch]
    assert links(stack, everything) == {1: len(everything)}
    assert Counter(stack.emails_per_invoice(everything)) == {1: len(everything)}
    # each namespace was handled by its shard and no other
    logs = operators.logs()
    by_ns = owners_in_logs(logs, namespaces)
    for ns in namespaces:
        assert by_ns[ns] == {operators.processes[shard_of(ns, 3)].log_file.name}, (ns, by_ns[ns])

    # under load: half of the first invoices paid, the second batch finalized, while the shards roll 3 -> 4
    rng = random.Random(18)
    paying = {ns: rng.sample(first[ns], PER_NAMESPACE // 2) for ns in namespaces}
    second_names = {ns: stack.create_invoices(tenants[ns], PER_NAMESPACE, prefix="second") for ns in namespaces}
    payments = asyncio.create_task(pay(stack, [i for batch in paying.values() for i in batch]))
    if reshard == "rolling":
        await operators.roll_to(4, pause=0.5)
    else:
        await asyncio.sleep(0.3)  # links and payments in flight
        await operators.replace(4)
    await payments
    second: dict[str, list[Obj]] = {}
    for ns in namespaces:
        await stack.until(f"the second batch in {ns} Open and emailed",
                          lambda ns=ns: len(stack.finalized(ns, second_names[ns])) == PER_NAMESPACE, 240)
        second[ns] = list(stack.finalized(ns, second_names[ns]).values())
    for ns in namespaces:
        names = {i["metadata"]["name"] for i in paying[ns]}
        await stack.until(f"the payments in {ns} recorded", lambda ns=ns, names=names:
                          paid_and_settled(stack, ns, names), 240)

    # after the reshard: everything else paid, handled by the new shards
    rest = [i for ns in namespaces for i in [*first[ns], *second[ns]] if i not in paying[ns]]
    await pay(stack, rest)
    for ns in namespaces:
        names = {i["metadata"]["name"] for i in [*first[ns], *second[ns]]}
        await stack.until(f"every invoice in {ns} paid and settled",
                          lambda ns=ns, names=names: paid_and_settled(stack, ns, names), 240)

    invoices = [i for ns in namespaces for i in stack.invoices(ns)]
    assert len(invoices) == 2 * PER_NAMESPACE * len(namespaces)
    assert links(stack, invoices) == {1: len(invoices)}, "one payment link per invoice, through the reshard"
    assert Counter(stack.emails_per_invoice(invoices)) == {1: len(invoices)}, "one link email per invoice"
    assert Counter(stack.emails_per_invoice(invoices, kind="receipt")) == {1: len(invoices)}, "one receipt each"
    for invoice in invoices:
        status = invoice["status"]
        assert status["phase"] == "Paid" and status["payment"], invoice["metadata"]
    # after the roll, each namespace is handled by its new shard (the last process of that index)
    after = {name: text for name, text in operators.logs().items() if name.startswith("operator-4-")}
    late = owners_in_logs({n: t for n, t in after.items()}, namespaces)
    for ns in namespaces:
        assert late[ns] <= {operators.processes[shard_of(ns, 4)].log_file.name}, (ns, late[ns])
