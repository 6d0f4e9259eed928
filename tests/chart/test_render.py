"""The chart renders, lints and validates strictly against the Kubernetes schemas for every value set."""

from __future__ import annotations

import functools
import json
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate import utils as kv_utils

from tests.chart.conftest import BASE_URL, CHART, VALUE_SETS, RenderError, one, render, run_helm

KUBERNETES_VERSION = "1.30.0"
# Kinds outside the Kubernetes API itself; checked by hand below.
NON_CORE_KINDS = {"ServiceMonitor", "PrometheusRule"}


@functools.cache
def _validator(kind: str, api_version: str) -> jsonschema.protocols.Validator:
    """kubernetes-validate's strict schema for one kind, built once (it re-reads the files on every call)."""
    from referencing import Registry, Resource

    version = kv_utils.all_versions()
    chosen = [v for v in version if kv_utils.major_minor(v) <= kv_utils.major_minor(KUBERNETES_VERSION)][-1]
    folder = f"kubernetes-json-schema/v{chosen}-local-strict"
    group_version = api_version.split("/")
    short = group_version[0].split(".")[0] + "-" + group_version[1] if len(group_version) == 2 else group_version[0]
    schema = kv_utils.schema_contents(f"{folder}/{kind.lower()}-{short}.json", KUBERNETES_VERSION)
    definitions = kv_utils.schema_contents(f"{folder}/_definitions.json", KUBERNETES_VERSION)
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


def validate_strictly(doc: dict[str, Any]) -> None:
    errors = sorted(_validator(doc["kind"], doc["apiVersion"]).iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, f"{doc['kind']}/{doc['metadata']['name']}: " + "; ".join(
        f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors[:5])


def test_strict_validation_catches_a_misspelt_field() -> None:
    # The check below is only worth something if it rejects what the API server would.
    deployment = one(render(), "Deployment", "fr-fluxrate-receiver")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(AssertionError, match="readinessProbes"):
        validate_strictly(deployment)
    # and our cached validator agrees with kubernetes-validate's own entry point
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_rendered_manifest_is_valid_kubernetes(name: str) -> None:
    docs = render(VALUE_SETS[name])
    assert docs
    for doc in docs:
        if doc["kind"] in NON_CORE_KINDS:
            continue
        validate_strictly(doc)
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "fluxrate"


def test_service_monitor_scrapes_the_receiver_metrics() -> None:
    docs = render(VALUE_SETS["scaled"])
    monitor = one(docs, "ServiceMonitor", "fr-fluxrate-receiver")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    service = one(docs, "Service", "fr-fluxrate-receiver")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}


@pytest.mark.parametrize("name", ["defaults", "ha", "namespaced"])
def test_helm_lint_passes(name: str) -> None:
    args = ["lint", "--strict", str(CHART), "--set-json", f"publicBaseUrl={json.dumps(BASE_URL)}"]
    for key, value in VALUE_SETS[name].items():
        args += ["--set-json", f"{key}={json.dumps(value)}"]
    done = run_helm(*args)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in done.stdout


def test_rendering_without_the_public_base_url_fails_and_names_the_value() -> None:
    with pytest.raises(RenderError) as caught:
        render(base_url=None)
    message = str(caught.value)
    assert "publicBaseUrl is required" in message
    assert "--set publicBaseUrl=https://" in message


def test_a_public_base_url_that_is_not_a_url_is_refused() -> None:
    with pytest.raises(RenderError, match="publicBaseUrl"):
        render(base_url="billing.example.com")


def test_unknown_values_are_refused_by_the_schema() -> None:
    with pytest.raises(RenderError, match="replica"):
        render({"operator": {"replica": 2}})


def test_ingress_tls_without_a_secret_name_fails() -> None:
    with pytest.raises(RenderError, match=r"ingress\.tls\.secretName is required"):
        render({"ingress": {"enabled": True, "host": "billing.example.com", "tls": {"enabled": True}}})


def test_notes_print_the_webhook_url_pattern_and_the_next_steps() -> None:
    done = run_helm("install", "fr", str(CHART), "--dry-run=client", "--namespace", "billing",
                    "--set", "publicBaseUrl=https://billing.example.com/")
    assert done.returncode == 0, done.stderr
    notes = done.stdout.split("NOTES:", 1)[1]
    assert "https://billing.example.com/api/v1/webhooks/stripe/<namespace>/<integration-name>" in notes
    assert "kubectl -n NS create secret generic stripe-credentials" in notes
    assert "jsonpath='{.status.webhookURL}" in notes
    assert "webhookSecretRef" in notes
    # the steps' manifest is valid YAML a user can paste
    manifest = notes.split("<<'YAML'\n", 1)[1].split("   YAML\n", 1)[0]
    integration = yaml.safe_load("\n".join(line[3:] for line in manifest.splitlines()))
    assert integration["kind"] == "StripeIntegration"
    assert integration["spec"]["secretKeyRef"] == {"name": "stripe-credentials", "key": "secret-key"}
