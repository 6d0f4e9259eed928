"""fluxrate's CRDs and Helm chart on a real kube-apiserver (Kubernetes 1.34, tests/kube): created, Established, and
every object `helm template` renders accepted by `kubectl apply --dry-run=server`, as `helm install` needs.

These tests use a control plane of their own with nothing installed (the session's cluster already holds the
CRDs, and these tests create, delete and add CRDs); it is where `helm install` would put the chart.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from fluxrate_sandbox.real_kube import RealKube
from tests.chart.conftest import CHART, VALUE_SETS, by_kind, one, render, run_helm
from tests.conftest import built_realkube

from .crd_helpers import (
    CRD_DIRS,
    PROMETHEUS_RULE_CRD,
    SERVICE_MONITOR_CRD,
    crd_files,
    kubectl,
    kubectl_ok,
    load_crd,
    renamed_copy,
    rule_message,
)

CRD_API = "customresourcedefinition.apiextensions.k8s.io"
GO_MOD = CRD_DIRS["crds"].parent / "tests" / "kube" / "go.mod"


@pytest.fixture(scope="module")
def bare_kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealKube]:
    """A real kube-apiserver, etcd and controller-manager with no CRD installed, for this module alone."""
    cluster = RealKube(tmp_path_factory.mktemp("bare-kube"), binary=built_realkube())
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def key(doc: dict[str, Any]) -> tuple[str, str, str | None, str]:
    meta = doc["metadata"]
    return doc["apiVersion"], doc["kind"], meta.get("namespace"), meta["name"]


def served_kinds(kube: RealKube, api_version: str) -> set[str]:
    """The kinds the server serves in one group version (discovery), empty when it serves none of that group."""
    path = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
    done = kubectl(kube, "get", "--raw", path)
    if done.returncode != 0:
        assert "NotFound" in done.stderr or "could not find" in done.stderr, done.stderr
        return set()
    return {resource["kind"] for resource in json.loads(done.stdout)["resources"]}


def install_crds(kube: RealKube, crds: list[dict[str, Any]]) -> None:
    """Create or update CRDs for real and wait until they are Established (a dry run of a CR needs its CRD)."""
    if not crds:
        return
    kubectl_ok(kube, "apply", "-f", "-", stdin=yaml.safe_dump_all(crds))
    kubectl_ok(kube, "wait", "--for=condition=Established", "--timeout=60s",
               *(f"{CRD_API}/{crd['metadata']['name']}" for crd in crds))


def prepare_for(kube: RealKube, docs: list[dict[str, Any]]) -> None:
    """What must exist before a dry run of ``docs`` can succeed: their namespaces (admission refuses objects in a
    namespace that does not exist, dry run or not), the CRDs the chart renders, and the ServiceMonitor and
    PrometheusRule test CRDs."""
    namespaces = sorted({doc["metadata"]["namespace"] for doc in docs if doc["metadata"].get("namespace")})
    kubectl_ok(kube, "apply", "-f", "-", stdin=yaml.safe_dump_all(
        [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}} for name in namespaces]))
    install_crds(kube, by_kind(docs, "CustomResourceDefinition"))
    if by_kind(docs, "ServiceMonitor"):
        install_crds(kube, [SERVICE_MONITOR_CRD])
    if by_kind(docs, "PrometheusRule"):
        install_crds(kube, [PROMETHEUS_RULE_CRD])


def dry_run(kube: RealKube, docs: list[dict[str, Any]]) -> Any:
    return kubectl(kube, "apply", "--dry-run=server", "-o", "json", "-f", "-", stdin=yaml.safe_dump_all(docs))


# --- the CRDs -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("directory", list(CRD_DIRS))
def test_every_crd_is_created_established_and_served(bare_kube: RealKube, directory: str) -> None:
    files = crd_files(directory)
    crds = [yaml.safe_load(path.read_text()) for path in files]
    assert {crd["spec"]["names"]["kind"] for crd in crds} == {"Invoice", "StripeIntegration"}
    names = [f"{CRD_API}/{crd['metadata']['name']}" for crd in crds]
    # The other directory's copy may have been created by the previous parameter: start from none.
    kubectl_ok(bare_kube, "delete", "--ignore-not-found", "--wait", *names)

    created = kubectl(bare_kube, "create", "--save-config", *(arg for path in files for arg in ("-f", str(path))))

    assert created.returncode == 0, created.stderr
    assert created.stderr == ""  # no warning either
    assert created.stdout.splitlines() == [f"{name} created" for name in names]
    kubectl_ok(bare_kube, "wait", "--for=condition=Established", "--timeout=60s", *names)
    for crd in crds:
        conditions = {c["type"]: c["status"] for c in json.loads(kubectl_ok(
            bare_kube, "get", f"{CRD_API}/{crd['metadata']['name']}", "-o", "json"))["status"]["conditions"]}
        assert conditions["NamesAccepted"] == "True"
        assert conditions["Established"] == "True"
        listed = kubectl(bare_kube, "get", f"{crd['spec']['names']['plural']}.{crd['spec']['group']}", "-A")
        assert (listed.returncode, listed.stderr.strip()) == (0, "No resources found")


def test_the_only_rendered_kinds_a_bare_server_does_not_serve_are_prometheus_operators(bare_kube: RealKube) -> None:
    """Every kind of every value set is served once the chart's own CRDs (fluxrate's, and kopf's peering CRDs for
    HA) are installed, except the ServiceMonitor and the PrometheusRule: they need prometheus-operator's CRDs, which
    the dry run below supplies as test fixtures (SERVICE_MONITOR_CRD, PROMETHEUS_RULE_CRD)."""
    kubectl_ok(bare_kube, "delete", "--ignore-not-found", "--wait", f"{CRD_API}/servicemonitors.monitoring.coreos.com",
               f"{CRD_API}/prometheusrules.monitoring.coreos.com")
    rendered = {(doc["apiVersion"], doc["kind"]) for values in VALUE_SETS.values() for doc in render(values)}
    chart_crds = {crd["metadata"]["name"]: crd for values in VALUE_SETS.values()
                  for crd in by_kind(render(values), "CustomResourceDefinition")}
    assert set(chart_crds) == {"invoices.billing.fluxrate.co", "stripeintegrations.billing.fluxrate.co",
                               "clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"}
    install_crds(bare_kube, list(chart_crds.values()))

    unserved = {(api_version, kind) for api_version, kind in rendered
                if kind not in served_kinds(bare_kube, api_version)}

    assert unserved == {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}


@pytest.mark.parametrize("value_set", list(VALUE_SETS))
def test_every_rendered_object_is_accepted_by_a_server_side_dry_run(bare_kube: RealKube, value_set: str) -> None:
    docs = render(VALUE_SETS[value_set])
    prepare_for(bare_kube, docs)

    done = dry_run(bare_kube, docs)

    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no warning: no deprecated API, no unknown or duplicate field
    answer = json.loads(done.stdout)
    items = answer["items"] if answer["kind"] == "List" else [answer]
    assert [key(item) for item in items] == [key(doc) for doc in docs]
    for item in items:
        # The server's create or update path ran (identity and timestamps are the server's own).
        assert item["metadata"]["uid"] and item["metadata"]["creationTimestamp"], key(item)


@pytest.mark.parametrize("mistake", ["unknown-field", "namespace-missing"])
def test_the_dry_run_refuses_what_an_install_would_refuse(bare_kube: RealKube, mistake: str) -> None:
    """The check above has teeth: strict field validation and namespace admission run in a server-side dry run."""
    docs = render({})
    prepare_for(bare_kube, docs)
    deployment = one(docs, "Deployment", "fr-fluxrate-receiver")
    if mistake == "unknown-field":
        deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {"httpGet": {"path": "/healthz"}}
        expected = 'unknown field "spec.template.spec.containers[0].livenesProbe"'
    else:
        deployment["metadata"]["namespace"] = "never-created"
        expected = 'namespaces "never-created" not found'

    done = dry_run(bare_kube, [deployment])

    assert done.returncode != 0
    assert expected in done.stderr


# --- what the server version must support ---------------------------------------------------------------------


def test_the_chart_renders_for_the_tested_server_and_refuses_servers_without_ratcheting(bare_kube: RealKube) -> None:
    """Chart.yaml's kubeVersion: the real server these tests run is accepted; 1.29 (validation ratcheting off,
    see Chart.yaml) is refused by helm before anything is installed."""
    # The server reports the k8s.io/kubernetes version tests/kube/go.mod requires (the Makefile stamps it).
    required = re.search(r"^\s*k8s\.io/kubernetes (v[0-9.]+)$", GO_MOD.read_text(), re.MULTILINE)
    assert required is not None
    served = json.loads(kubectl_ok(bare_kube, "version", "-o", "json"))["serverVersion"]["gitVersion"]
    assert served == required[1]
    base = ["template", "fr", str(CHART), "--set", "publicBaseUrl=https://billing.example.com"]

    assert run_helm(*base, "--kube-version", served).returncode == 0
    refused = run_helm(*base, "--kube-version", "v1.29.15")
    assert refused.returncode != 0
    assert "chart requires kubeVersion" in refused.stderr


def test_a_tightened_crd_does_not_block_writes_to_invoices_stored_before(bare_kube: RealKube) -> None:
    """Validation ratcheting, which Chart.yaml's kubeVersion floor exists for: an Invoice stored under an older,
    looser CRD (a memo longer than today's maxLength, three decimals in USD before the decimals rule) keeps
    accepting the operator's status writes (the server evaluates the spec's CEL rules on those too) and the removal
    of its finalizer after the CRD is upgraded; only changing an offending value is refused."""
    group = "ratchet.fluxrate.test"
    current = renamed_copy(load_crd("Invoice"), group)
    older = renamed_copy(load_crd("Invoice"), group)
    spec_schema = older["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    del spec_schema["properties"]["memo"]["maxLength"]
    decimals = rule_message(current, "{1,2}")
    spec_schema["x-kubernetes-validations"] = [rule for rule in spec_schema["x-kubernetes-validations"]
                                               if rule["message"] != decimals]
    install_crds(bare_kube, [older])
    kubectl_ok(bare_kube, "create", "namespace", "ratchet")
    invoice = yaml.safe_load((CRD_DIRS["crds"].parent / "examples" / "03-invoice-usd.yaml").read_text())
    invoice["apiVersion"] = f"{group}/v1alpha1"
    invoice["metadata"] = {"name": "stored-before", "namespace": "ratchet", "finalizers": ["fluxrate.test/keep"]}
    invoice["spec"]["memo"] = "m" * 600
    invoice["spec"]["lineItems"][0]["unitAmount"] = "199.005"
    kubectl_ok(bare_kube, "create", "-f", "-", stdin=yaml.safe_dump(invoice))
    resource = f"invoices.{group}"

    install_crds(bare_kube, [current])
    long_memo = {**invoice, "metadata": {"name": "probe", "namespace": "ratchet"}}
    # The upgraded schema is in force once a new invoice like it is refused (the server reloads it shortly).
    for _ in range(300):
        refused = dry_run(bare_kube, [long_memo])
        if refused.returncode != 0:
            break
    assert "spec.memo: Too long: may not be more than 500 bytes" in refused.stderr
    # (with a schema error present, the server does not evaluate CEL rules: one mistake at a time)
    three_decimals = {**long_memo, "spec": {**invoice["spec"], "memo": "short"}}
    assert decimals in dry_run(bare_kube, [three_decimals]).stderr

    kubectl_ok(bare_kube, "-n", "ratchet", "patch", resource, "stored-before", "--subresource=status",
               "--type=merge", "-p", json.dumps({"status": {"phase": "Open"}}))
    kubectl_ok(bare_kube, "-n", "ratchet", "patch", resource, "stored-before", "--type=merge",
               "-p", json.dumps({"metadata": {"finalizers": None}}))
    edited = kubectl(bare_kube, "-n", "ratchet", "patch", resource, "stored-before", "--type=merge",
                     "-p", json.dumps({"spec": {"memo": "n" * 600}}))
    assert edited.returncode != 0
    assert "spec.memo: Too long: may not be more than 500 bytes" in edited.stderr
    stored = json.loads(kubectl_ok(bare_kube, "-n", "ratchet", "get", resource, "stored-before", "-o", "json"))
    assert (stored["status"]["phase"], stored["metadata"].get("finalizers")) == ("Open", None)
    assert (stored["spec"]["memo"], stored["spec"]["lineItems"][0]["unitAmount"]) == ("m" * 600, "199.005")
    kubectl_ok(bare_kube, "delete", "namespace", "ratchet", "--wait=false")
    kubectl_ok(bare_kube, "delete", f"{CRD_API}/{current['metadata']['name']}", "--wait=false")
