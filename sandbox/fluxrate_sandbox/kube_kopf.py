"""kopf's peering CRDs (``kopf.dev/v1``), for running kopf against the sandbox without ``--standalone``."""

from __future__ import annotations

from typing import Any

_SCHEMA: dict[str, Any] = {"openAPIV3Schema": {
    "type": "object",
    "properties": {
        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    },
    "x-kubernetes-preserve-unknown-fields": True,
}}


def _crd(kind: str, plural: str, scope: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.kopf.dev"},
        "spec": {
            "scope": scope,
            "group": "kopf.dev",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
            "versions": [{"name": "v1", "served": True, "storage": True, "schema": _SCHEMA}],
        },
    }


def kopf_peering_crds() -> list[dict[str, Any]]:
    """The same CRDs as kopf's docs/peering.yaml (status without a subresource, free-form)."""
    return [_crd("ClusterKopfPeering", "clusterkopfpeerings", "Cluster"),
            _crd("KopfPeering", "kopfpeerings", "Namespaced")]


def kopf_peering_object(name: str = "default", namespace: str | None = None) -> dict[str, Any]:
    if namespace is None:
        return {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": name}}
    return {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": name, "namespace": namespace}}
