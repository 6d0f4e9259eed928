"""operator.shards: 2 with HA on the real kube-apiserver, under the chart's RBAC: four operator processes (two
shards, each a kopf peering of its own with two priorities; the init containers create both peering objects by
name), each namespace served by its shard only, one link and one email per invoice, a payment recorded."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from fluxrate.operator.sharding import shard_of
from fluxrate_sandbox.real_kube import RealKube
from fluxrate_sandbox.shards import exactly_per_shard
from tests.real_kube.chart_stack import chart_stack
from tests.real_kube.test_flow import DENIED, connected, integration, invoice, is_open, phase, secret

pytestmark = pytest.mark.timeout(300)
VALUES = {"operator": {"shards": 2, "ha": {"enabled": True, "priorities": [200, 100]}}}


async def test_two_sharded_ha_peerings_under_the_charts_rbac(own_real_kube: RealKube, tmp_path: Path) -> None:
    kube = own_real_kube
    namespaces = exactly_per_shard(2, prefix="sharded")
    async with chart_stack(kube, VALUES, tmp_path / "stack") as stack:
        assert len(stack.operators) == 4
        for ns in namespaces:
            await kube.ensure_namespace(ns)
            _, key = stack.stripe.add_account()
            await kube.create_object(secret(ns, "stripe-credentials", {"secret-key": key}))
            await kube.create_object(integration(ns, "stripe", webhookEndpoint={"managed": True}))
        for ns in namespaces:
            await stack.wait(f"the integration in {ns} to connect", "stripeintegrations", ns, "stripe", connected,
                             timeout=90)
            for name in ("inv-1", "inv-2"):
                await kube.create_object(invoice(ns, name))
        opened = [await stack.wait(f"{ns}/{name} Open and emailed", "invoices", ns, name, is_open, timeout=90)
                  for ns in namespaces for name in ("inv-1", "inv-2")]
        created = stack.stripe.links_created_by_invoice
        assert Counter(created[i["metadata"]["uid"]] for i in opened) == {1: 4}
        assert all(len(stack.smtp.to(i["spec"]["customer"]["email"])) == 1 for i in opened)
        paid = await stack.stripe.pay(opened[0]["status"]["paymentLink"]["id"])
        await paid.delivered
        ns0 = opened[0]["metadata"]["namespace"]
        await stack.wait("the payment recorded", "invoices", ns0, "inv-1", phase("Paid"))
        peerings = {p["metadata"]["name"] for p in await kube.list_objects("kopf.dev/v1", "clusterkopfpeerings")}
        assert all(any(p.endswith(f"-shard-{i}") for p in peerings) for i in range(2)), peerings
        logs = {p.name: p.log_file.read_text(errors="replace") for p in stack.operators}
        all_logs = stack.logs()
    for ns in namespaces:
        mentioned = {name for name, text in logs.items() if f"[{ns}/" in text}
        assert mentioned and all(f"-shard-{shard_of(ns, 2)}-" in name for name in mentioned), (ns, mentioned)
    denied = [line for line in all_logs.splitlines() if DENIED.search(line)]
    assert not denied, "the API server refused a request:\n" + "\n".join(denied[:10])
