"""operator.shards: one operator Deployment per shard (per shard and priority with HA), each told its shard, each
shard in a kopf peering of its own; the same image, settings and RBAC for all."""

from __future__ import annotations

import argparse
import json
from typing import Any

import pytest

from fluxrate.operator.settings import add_operator_arguments, settings_from_args
from tests.chart.conftest import VALUE_SETS, RenderError, by_kind, one, render
from tests.chart.test_rbac import roles


def operators(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in by_kind(docs, "Deployment") if "-operator" in d["metadata"]["name"]}


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", [])}


def test_one_shard_is_the_unsharded_operator() -> None:
    assert render({"operator": {"shards": 1}}) == render()
    (deployment,) = operators(render()).values()
    assert deployment["metadata"]["name"] == "fr-fluxrate-operator"
    assert not {"FLUXRATE_SHARD_INDEX", "FLUXRATE_SHARD_COUNT"} & set(
        env_of(deployment["spec"]["template"]["spec"]["containers"][0]))


def test_three_shards_are_three_deployments_told_their_shard(monkeypatch: pytest.MonkeyPatch) -> None:
    docs = render(VALUE_SETS["sharded"])
    found = operators(docs)
    assert sorted(found) == [f"fr-fluxrate-operator-shard-{i}" for i in range(3)]
    config = one(docs, "ConfigMap", "fr-fluxrate-operator")["data"]
    images, selectors = set(), set()
    for index in range(3):
        deployment = found[f"fr-fluxrate-operator-shard-{index}"]
        assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
        pod = deployment["spec"]["template"]
        assert pod["metadata"]["labels"]["fluxrate.co/operator-shard"] == str(index)
        (container,) = pod["spec"]["containers"]
        assert container["envFrom"] == [{"configMapRef": {"name": "fr-fluxrate-operator"}}]  # the same settings
        env = env_of(container)
        assert env == {"FLUXRATE_SHARD_INDEX": str(index), "FLUXRATE_SHARD_COUNT": "3"}
        images.add(container["image"])
        selectors.add(json.dumps(deployment["spec"]["selector"], sort_keys=True))
        # what the process makes of its environment: the chart's settings plus its shard
        for key, value in {**config, **env}.items():
            monkeypatch.setenv(key, value)
        parser = argparse.ArgumentParser()
        add_operator_arguments(parser)
        settings = settings_from_args(parser.parse_args([]))
        assert (settings.shard_index, settings.shard_count, settings.peering) == (index, 3, None)
    assert len(images) == 1
    assert len(selectors) == 3  # the Deployments never fight over pods
    # the metrics Service (and so the ServiceMonitor) reaches every shard's pod
    service = one(docs, "Service", "fr-fluxrate-operator-metrics")
    for deployment in found.values():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()


def test_sharded_ha_gives_each_shard_its_own_peering_and_standbys() -> None:
    docs = render({"operator": {"shards": 2, "ha": {"enabled": True, "priorities": [200, 100]}}})
    found = operators(docs)
    assert sorted(found) == [f"fr-fluxrate-operator-shard-{s}-{i}" for s in range(2) for i in range(2)]
    for name, deployment in found.items():
        shard = int(name.split("-shard-")[1].split("-")[0])
        pod = deployment["spec"]["template"]["spec"]
        env = env_of(pod["containers"][0])
        assert env["FLUXRATE_SHARD_INDEX"] == str(shard) and env["FLUXRATE_SHARD_COUNT"] == "2"
        assert env["FLUXRATE_PEERING"] == f"fr-fluxrate-shard-{shard}"  # overrides the ConfigMap's
        assert env_of(pod["initContainers"][0]) == {"FLUXRATE_PEERING": f"fr-fluxrate-shard-{shard}"}
    by_shard: dict[str, set[str]] = {}
    for deployment in found.values():
        env = env_of(deployment["spec"]["template"]["spec"]["containers"][0])
        by_shard.setdefault(env["FLUXRATE_SHARD_INDEX"], set()).add(env["FLUXRATE_PRIORITY"])
    assert by_shard == {"0": {"200", "100"}, "1": {"200", "100"}}


@pytest.mark.parametrize("name", ["sharded", "sharded-ha-namespaced"])
def test_rbac_is_the_same_for_every_shard_but_the_peering_names(name: str) -> None:
    values = VALUE_SETS[name]
    unsharded = {**values, "operator": {**values["operator"], "shards": 1}}

    def rules(docs: list[dict[str, Any]]) -> list[Any]:
        return [[{k: v for k, v in rule.items() if k != "resourceNames"} for rule in doc["rules"]]
                for doc in roles(docs, "operator")]

    sharded_docs = render(values)
    assert rules(sharded_docs) == rules(render(unsharded))
    accounts = {d["spec"]["template"]["spec"]["serviceAccountName"] for d in operators(sharded_docs).values()}
    assert accounts == {"fr-fluxrate-operator"}
    named = [rule["resourceNames"] for doc in roles(sharded_docs, "operator") for rule in doc["rules"]
             if rule.get("resourceNames")]
    count = values["operator"]["shards"]
    expected = [[f"fr-fluxrate-shard-{i}" for i in range(count)]] if values["operator"].get("ha") else []
    assert named == expected * len(roles(sharded_docs, "operator"))


@pytest.mark.parametrize("shards", [0, 65, "3", 1.5])
def test_the_schema_refuses_impossible_shard_counts(shards: Any) -> None:
    with pytest.raises(RenderError, match="shards"):
        render({"operator": {"shards": shards}})


@pytest.mark.parametrize(("index", "count"), [("3", "3"), ("-1", "2"), ("0", "0"), ("0", "65")])
def test_the_operator_refuses_a_shard_outside_the_count(index: str, count: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLUXRATE_PUBLIC_BASE_URL", "https://billing.example.com")
    monkeypatch.setenv("FLUXRATE_SHARD_INDEX", index)
    monkeypatch.setenv("FLUXRATE_SHARD_COUNT", count)
    parser = argparse.ArgumentParser()
    add_operator_arguments(parser)
    with pytest.raises(SystemExit, match="shard"):
        settings_from_args(parser.parse_args([]))
