"""Rendering the Helm chart with the helm binary that `make tools` installs (scripts/fetch_helm.py)."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "fluxrate"
BASE_URL = "https://billing.example.com"


def helm_binary() -> str:
    candidates = [os.environ.get("HELM"), str(Path(sys.prefix) / "bin" / "helm"), shutil.which("helm")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    # A missing helm is a broken setup, not a reason to skip: `make test` installs it first.
    pytest.fail("helm not found: run `make tools` (python scripts/fetch_helm.py) or set $HELM", pytrace=False)


def run_helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm_binary(), *args], capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "KUBECONFIG": os.devnull, "HELM_CACHE_HOME": "/tmp/fluxrate-helm-cache",
                               "HELM_CONFIG_HOME": "/tmp/fluxrate-helm-config"})


def _set_args(values: dict[str, Any]) -> list[str]:
    """--set-json for each top-level key, so types survive exactly."""
    import json

    args: list[str] = []
    for key, value in values.items():
        args += ["--set-json", f"{key}={json.dumps(value)}"]
    return args


@functools.lru_cache(maxsize=64)
def _render_cached(frozen: str, release: str, namespace: str) -> tuple[str, ...]:
    values = yaml.safe_load(frozen)
    done = run_helm("template", release, str(CHART), "--namespace", namespace, "--include-crds",
                    *_set_args(values))
    if done.returncode != 0:
        raise RenderError(done.stderr)
    return tuple(yaml.safe_dump(doc) for doc in yaml.safe_load_all(done.stdout) if doc)


class RenderError(Exception):
    pass


def render(values: dict[str, Any] | None = None, *, release: str = "fr", namespace: str = "billing",
           base_url: str | None = BASE_URL) -> list[dict[str, Any]]:
    """Rendered manifests (CRDs included) as dicts; raises RenderError with helm's stderr on failure."""
    merged = dict(values or {})
    if base_url is not None:
        merged.setdefault("publicBaseUrl", base_url)
    docs = _render_cached(yaml.safe_dump(merged, sort_keys=True), release, namespace)
    return [yaml.safe_load(doc) for doc in docs]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [doc for doc in docs if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


# Named value sets the tests render; each must pass every check.
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespaced": {"watchNamespaces": ["team-a", "team-b"]},
    "ingress-tls": {
        "ingress": {"enabled": True, "className": "nginx", "host": "billing.example.com",
                    "annotations": {"cert-manager.io/cluster-issuer": "letsencrypt"},
                    "tls": {"enabled": True, "secretName": "billing-tls"}},
        "networkPolicy": {"enabled": True, "receiverFrom": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}]},
    },
    "ha": {"operator": {"ha": {"enabled": True, "priorities": [300, 200, 100]}}},
    "ha-namespaced": {"operator": {"ha": {"enabled": True}}, "watchNamespaces": ["team-a"]},
    "sharded": {"operator": {"shards": 3}},
    "sharded-ha-namespaced": {"operator": {"shards": 2, "ha": {"enabled": True}}, "watchNamespaces": ["team-a"]},
    "smtp": {"smtp": {"host": "smtp.example.com", "port": 465, "security": "tls", "username": "billing",
                      "from": "Billing <billing@example.com>",
                      "passwordSecret": {"name": "smtp-credentials", "key": "password"}}},
    "scaled": {"receiver": {"autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 9},
                            "podDisruptionBudget": {"enabled": True, "minAvailable": 2}},
               "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
               "image": {"digest": "sha256:" + "a" * 64}},
    "monitoring": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
                   "prometheusRule": {"enabled": True, "labels": {"release": "prometheus"},
                                      "additionalAlertLabels": {"team": "billing"}},
                   "grafanaDashboard": {"enabled": True, "folder": "Billing"},
                   "networkPolicy": {"enabled": True, "metricsFrom": [
                       {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]}},
}
