"""kubectl against the real API server, and the CRDs and rules the real-server CRD tests read."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from fluxrate_sandbox.real_kube import RealKube

ROOT = Path(__file__).resolve().parents[2]
CRD_DIRS = {"crds": ROOT / "crds", "chart-crds": ROOT / "charts" / "fluxrate" / "crds"}


def kubectl_binary() -> str:
    for candidate in (os.environ.get("KUBECTL"), str(Path(sys.prefix) / "bin" / "kubectl"), shutil.which("kubectl")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail("kubectl not found: run `make tools` or set $KUBECTL", pytrace=False)


def kubectl(kube: RealKube, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """kubectl as the cluster's admin (its kubeconfig), as a user would run it; never raises on failure."""
    return subprocess.run([kubectl_binary(), *args], input=stdin, capture_output=True, text=True, timeout=120,
                          check=False, env={**os.environ, "KUBECONFIG": str(kube.kubeconfig)})


def kubectl_ok(kube: RealKube, *args: str, stdin: str | None = None) -> str:
    done = kubectl(kube, *args, stdin=stdin)
    assert done.returncode == 0, f"kubectl {' '.join(args)} failed:\n{done.stderr}"
    return done.stdout


def crd_files(directory: str) -> list[Path]:
    return sorted(CRD_DIRS[directory].glob("*.yaml"))


def load_crd(kind: str, directory: str = "crds") -> dict[str, Any]:
    for path in crd_files(directory):
        crd = yaml.safe_load(path.read_text())
        if crd["spec"]["names"]["kind"] == kind:
            return dict(crd)
    raise LookupError(kind)


def spec_rules(crd: dict[str, Any]) -> list[dict[str, str]]:
    """The x-kubernetes-validations of .spec in the CRD's (only) version."""
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return list(schema["properties"]["spec"]["x-kubernetes-validations"])


def rule_message(crd: dict[str, Any], fragment: str) -> str:
    """The message of the one .spec rule whose expression contains ``fragment``: what the server says when it fails."""
    found = [rule["message"] for rule in spec_rules(crd) if fragment in " ".join(rule["rule"].split())]
    assert len(found) == 1, f"expected one rule containing {fragment!r}, found {len(found)}"
    return found[0]


def renamed_copy(crd: dict[str, Any], group: str) -> dict[str, Any]:
    """The same CRD served under another API group, so it can be created beside (or instead of) the real one."""
    copy = yaml.safe_load(yaml.safe_dump(crd))
    copy["spec"]["group"] = group
    copy["metadata"] = {"name": f"{crd['spec']['names']['plural']}.{group}"}
    return dict(copy)


# A test fixture, not part of fluxrate: the chart's ServiceMonitor (serviceMonitor.enabled) needs the
# prometheus-operator's CRD, which a bare control plane does not have. This is prometheus-operator's
# monitoring.coreos.com/v1 ServiceMonitor reduced to the fields the chart renders, with their types and
# prometheus-operator's duration pattern; unknown fields are not preserved, so kubectl's strict field
# validation refuses anything the chart renders outside this subset instead of pruning it silently.
_DURATION = "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
SERVICE_MONITOR_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
    "spec": {
        "group": "monitoring.coreos.com",
        "scope": "Namespaced",
        "names": {"kind": "ServiceMonitor", "listKind": "ServiceMonitorList", "plural": "servicemonitors",
                  "singular": "servicemonitor", "shortNames": ["smon"]},
        "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
            "type": "object",
            "required": ["spec"],
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {"type": "object"},
                "spec": {
                    "type": "object",
                    "required": ["selector"],
                    "properties": {
                        "selector": {"type": "object", "x-kubernetes-map-type": "atomic", "properties": {
                            "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
                            "matchExpressions": {"type": "array", "items": {
                                "type": "object", "required": ["key", "operator"], "properties": {
                                    "key": {"type": "string"}, "operator": {"type": "string"},
                                    "values": {"type": "array", "items": {"type": "string"}}}}},
                        }},
                        "namespaceSelector": {"type": "object", "properties": {
                            "any": {"type": "boolean"},
                            "matchNames": {"type": "array", "items": {"type": "string"}},
                        }},
                        "endpoints": {"type": "array", "items": {"type": "object", "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "scheme": {"type": "string", "enum": ["http", "https"]},
                            "interval": {"type": "string", "pattern": _DURATION},
                            "scrapeTimeout": {"type": "string", "pattern": _DURATION},
                            "honorLabels": {"type": "boolean"},
                        }}},
                    },
                },
            },
        }}}],
    },
}

# The same for the chart's PrometheusRule (prometheusRule.enabled): prometheus-operator's monitoring.coreos.com/v1
# PrometheusRule reduced to the fields the chart renders (alerting rules), with their types.
_STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}
PROMETHEUS_RULE_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "prometheusrules.monitoring.coreos.com"},
    "spec": {
        "group": "monitoring.coreos.com",
        "scope": "Namespaced",
        "names": {"kind": "PrometheusRule", "listKind": "PrometheusRuleList", "plural": "prometheusrules",
                  "singular": "prometheusrule", "shortNames": ["promrule"]},
        "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
            "type": "object",
            "required": ["spec"],
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {"type": "object"},
                "spec": {"type": "object", "properties": {"groups": {"type": "array", "items": {
                    "type": "object", "required": ["name"], "properties": {
                        "name": {"type": "string", "minLength": 1},
                        "rules": {"type": "array", "items": {
                            "type": "object", "required": ["expr"], "properties": {
                                "alert": {"type": "string"},
                                "expr": {"x-kubernetes-int-or-string": True},
                                "for": {"type": "string", "pattern": _DURATION},
                                "labels": _STRINGS,
                                "annotations": _STRINGS,
                            }}},
                    }}}}},
            },
        }}}],
    },
}
