"""Pods: hardened, configured the way the processes read their settings, probes where the processes serve them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from fluxrate.operator.settings import add_operator_arguments
from fluxrate.operator.settings import settings_from_args as operator_settings
from fluxrate.webhook_receiver.settings import add_receiver_arguments
from fluxrate.webhook_receiver.settings import settings_from_args as receiver_settings
from tests.chart.conftest import CHART, ROOT, VALUE_SETS, by_kind, one, render


def pod_specs(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d["spec"]["template"]["spec"] for d in by_kind(docs, "Deployment")]


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_container_is_hardened_with_resources(name: str) -> None:
    for pod in pod_specs(render(VALUE_SETS[name])):
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        containers = pod["containers"] + pod.get("initContainers", [])
        for container in containers:
            ctx = container["securityContext"]
            assert ctx["runAsNonRoot"] is True
            assert ctx["allowPrivilegeEscalation"] is False
            assert ctx["readOnlyRootFilesystem"] is True
            assert ctx["capabilities"] == {"drop": ["ALL"]}
            assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= container["resources"][kind].keys()
            # read-only root: /tmp is the one writable path, an emptyDir
            tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert tmp, f"{container['name']} has no /tmp mount"
            volume = next(v for v in pod["volumes"] if v["name"] == tmp[0]["name"])
            assert "emptyDir" in volume
            assert not [e for e in container.get("env", []) if "PASSWORD" in e["name"] and "value" in e]


def test_operator_runs_once_with_recreate_and_kopf_liveness() -> None:
    docs = render()
    operator = one(docs, "Deployment", "fr-fluxrate-operator")
    assert operator["spec"]["replicas"] == 1
    assert operator["spec"]["strategy"] == {"type": "Recreate"}
    (container,) = operator["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["operator"]
    probe_port = container["livenessProbe"]["httpGet"]["port"]
    port = next(p["containerPort"] for p in container["ports"] if p["name"] == probe_port)
    config = one(docs, "ConfigMap", "fr-fluxrate-operator")["data"]
    assert config["FLUXRATE_LIVENESS_ENDPOINT"] == f"http://0.0.0.0:{port}/healthz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert "FLUXRATE_PEERING" not in config


def test_ha_runs_one_deployment_per_distinct_priority_in_one_peering() -> None:
    docs = render(VALUE_SETS["ha"])
    operators = [d for d in by_kind(docs, "Deployment") if "operator" in d["metadata"]["name"]]
    assert len(operators) == 3
    priorities, delays = [], {}
    for deployment in operators:
        assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
        pod = deployment["spec"]["template"]["spec"]
        env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
        priorities.append(int(env["FLUXRATE_PRIORITY"]))
        delays[int(env["FLUXRATE_PRIORITY"])] = env.get("FLUXRATE_STANDBY_DELAY")
        assert [c["name"] for c in pod["initContainers"]] == ["ensure-peering"]
    assert sorted(priorities) == [100, 200, 300]
    # only the standbys wait before joining the peering: replicas started together never both act
    assert delays == {300: None, 200: "10", 100: "10"}
    # selectors must not overlap, or the Deployments would fight over pods
    selectors = [json.dumps(d["spec"]["selector"], sort_keys=True) for d in operators]
    assert len(set(selectors)) == 3
    assert one(docs, "ConfigMap", "fr-fluxrate-operator")["data"]["FLUXRATE_PEERING"] == "fr-fluxrate"
    crds = {d["metadata"]["name"] for d in by_kind(docs, "CustomResourceDefinition")}
    assert {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"} <= crds


def test_the_standby_delay_follows_the_highest_priority_wherever_it_is_listed() -> None:
    docs = render({"operator": {"ha": {"enabled": True, "priorities": [100, 300, 200], "standbyDelaySeconds": 5}}})
    delays = {}
    for deployment in by_kind(docs, "Deployment"):
        if "operator" in deployment["metadata"]["name"]:
            env = {e["name"]: e["value"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
            delays[env["FLUXRATE_PRIORITY"]] = env.get("FLUXRATE_STANDBY_DELAY")
    assert delays == {"300": None, "200": "5", "100": "5"}


def test_ha_with_equal_priorities_is_refused() -> None:
    from tests.chart.conftest import RenderError

    with pytest.raises(RenderError, match="priorities"):
        render({"operator": {"ha": {"enabled": True, "priorities": [100, 100]}}})


def test_receiver_has_two_replicas_and_probes_on_its_endpoints() -> None:
    docs = render()
    receiver = one(docs, "Deployment", "fr-fluxrate-receiver")
    assert receiver["spec"]["replicas"] == 2
    (container,) = receiver["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["receiver"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    service = one(docs, "Service", "fr-fluxrate-receiver")
    assert service["spec"]["selector"].items() <= receiver["spec"]["template"]["metadata"]["labels"].items()
    assert not by_kind(docs, "PodDisruptionBudget") and not by_kind(docs, "HorizontalPodAutoscaler")
    assert not by_kind(docs, "Ingress") and not by_kind(docs, "NetworkPolicy")


def test_autoscaling_owns_the_replica_count_and_pdb_guards_it() -> None:
    docs = render(VALUE_SETS["scaled"])
    receiver = one(docs, "Deployment", "fr-fluxrate-receiver")
    assert "replicas" not in receiver["spec"]
    (hpa,) = by_kind(docs, "HorizontalPodAutoscaler")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 9)
    assert hpa["spec"]["scaleTargetRef"]["name"] == "fr-fluxrate-receiver"
    (pdb,) = by_kind(docs, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 2
    pod = receiver["spec"]["template"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert pod["spec"]["containers"][0]["image"] == "ghcr.io/fluxrate/fluxrate@sha256:" + "a" * 64


def test_ingress_exposes_only_the_webhook_path_with_tls() -> None:
    docs = render(VALUE_SETS["ingress-tls"])
    (ingress,) = by_kind(docs, "Ingress")
    assert ingress["spec"]["tls"] == [{"hosts": ["billing.example.com"], "secretName": "billing-tls"}]
    assert ingress["spec"]["ingressClassName"] == "nginx"
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "billing.example.com"
    (path,) = rule["http"]["paths"]
    assert (path["path"], path["pathType"]) == ("/api/v1/webhooks/stripe", "Prefix")
    assert path["backend"]["service"]["name"] == "fr-fluxrate-receiver"
    policies = {p["metadata"]["name"]: p for p in by_kind(docs, "NetworkPolicy")}
    # the operator admits only scrapes of its metrics port (from anywhere: networkPolicy.metricsFrom is empty)
    assert policies["fr-fluxrate-operator"]["spec"]["ingress"] == [{"ports": [{"port": "metrics", "protocol": "TCP"}]}]
    (allowed,) = policies["fr-fluxrate-receiver"]["spec"]["ingress"]
    assert allowed["from"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "ingress-nginx"}


def _parse(add_arguments, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> argparse.Namespace:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args([])


def test_operator_reads_every_setting_the_chart_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {**VALUE_SETS["smtp"], "watchNamespaces": ["team-a"], "rateLimits": {"test": 5, "live": 50},
              "reconcileInterval": 120, "resyncInterval": 90, "logLevel": "DEBUG",
              "stripe": {"apiBase": "http://stripe.test:12111", "maxNetworkRetries": 4},
              "operator": {"metricsPort": 9191}}
    docs = render(values)
    config = one(docs, "ConfigMap", "fr-fluxrate-operator")["data"]
    settings = operator_settings(_parse(add_operator_arguments, config, monkeypatch))
    assert settings.public_base_url == "https://billing.example.com"
    assert settings.namespaces == ("team-a",)
    assert (settings.rate_limit_test, settings.rate_limit_live) == (5, 50)
    assert (settings.reconcile_interval, settings.resync_interval) == (120, 90)
    assert settings.stripe_api_base == "http://stripe.test:12111" and settings.stripe_max_network_retries == 4
    assert settings.log_level == "DEBUG"
    assert settings.liveness_endpoint == "http://0.0.0.0:8080/healthz"
    assert settings.metrics_port == 9191
    smtp = settings.smtp
    assert (smtp.host, smtp.port, smtp.security, smtp.username) == ("smtp.example.com", 465, "tls", "billing")
    assert smtp.from_address == "Billing <billing@example.com>"
    # the password file the operator is told about is where the Secret is mounted
    pod = one(docs, "Deployment", "fr-fluxrate-operator")["spec"]["template"]["spec"]
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "smtp-password")
    volume = next(v for v in pod["volumes"] if v["name"] == "smtp-password")
    assert volume["secret"]["secretName"] == "smtp-credentials"
    (item,) = volume["secret"]["items"]
    assert smtp.password_file == str(Path(mount["mountPath"]) / item["path"]) and item["key"] == "password"
    assert mount["readOnly"] is True


def test_receiver_reads_every_setting_the_chart_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    docs = render({"watchNamespaces": ["team-a", "team-b"], "logLevel": "WARNING",
                   "receiver": {"signatureTolerance": 120, "maxBodyBytes": 65536, "secretCacheTtl": 30,
                                "statusFlushInterval": 5}})
    config = one(docs, "ConfigMap", "fr-fluxrate-receiver")["data"]
    assert all(key.startswith("FLUXRATE_RECEIVER_") for key in config)
    settings = receiver_settings(_parse(add_receiver_arguments, config, monkeypatch))
    assert (settings.host, settings.port) == ("0.0.0.0", 8080)
    assert settings.namespaces == ("team-a", "team-b")
    assert (settings.signature_tolerance, settings.max_body_bytes) == (120, 65536)
    assert (settings.secret_cache_ttl, settings.status_flush_interval) == (30, 5)
    assert settings.log_level == "WARNING"
    container = one(docs, "Deployment", "fr-fluxrate-receiver")["spec"]["template"]["spec"]["containers"][0]
    assert container["ports"][0]["containerPort"] == settings.port


def _leaf_paths(node: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(node, dict) and node:
        return [p for key, value in node.items() for p in _leaf_paths(value, (*prefix, key))]
    return [prefix]


def test_values_schema_describes_every_value() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    missing = []
    for path in _leaf_paths(values):
        node = schema
        for key in path:
            properties = node.get("properties", {})
            if key not in properties:
                # free-form objects (securityContexts, affinity) are described as a whole
                if node.get("type") == "object" and "properties" not in node:
                    break
                missing.append(".".join(path))
                break
            node = properties[key]
        else:
            assert "type" in node or "anyOf" in node, ".".join(path)
    assert not missing, f"values without a schema entry: {missing}"
    # and the schema knows nothing that values.yaml does not set (no stale entries)
    def schema_paths(node: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
        props = node.get("properties")
        if not props:
            return [prefix]
        return [p for key, child in props.items() for p in schema_paths(child, (*prefix, key))]
    value_prefixes = {path[:i] for path in _leaf_paths(values) for i in range(len(path) + 1)}
    stale = [".".join(p) for p in schema_paths(schema) if p not in value_prefixes and p != ("global",)]
    assert not stale, f"schema entries with no value: {stale}"


def test_chart_crds_are_identical_to_the_repository_crds() -> None:
    repo = {p.name: p.read_bytes() for p in (ROOT / "crds").glob("*.yaml")}
    chart = {p.name: p.read_bytes() for p in (CHART / "crds").glob("*.yaml")}
    assert repo, "no CRDs in crds/"
    assert chart.keys() == repo.keys(), "charts/fluxrate/crds/ and crds/ hold different files: copy crds/*.yaml"
    drifted = [name for name in repo if chart[name] != repo[name]]
    assert not drifted, f"charts/fluxrate/crds/ drifted from crds/ for {drifted}: cp crds/*.yaml charts/fluxrate/crds/"
    rendered = {d["metadata"]["name"] for d in by_kind(render(), "CustomResourceDefinition")}
    assert rendered == {yaml.safe_load(body)["metadata"]["name"] for body in repo.values()}
