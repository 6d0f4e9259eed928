"""Fixtures for the Kubernetes API sandbox (the lead may move them to tests/conftest.py)."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from fluxrate.sandbox.kube_server import KubeSandbox

REPO = Path(__file__).resolve().parents[2]

WIDGETS = "/apis/test.fluxrate.co/v1/namespaces/default/widgets"

# A small CRD owned by the sandbox tests, independent of crds/ (which evolves separately).
WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.test.fluxrate.co"},
    "spec": {
        "group": "test.fluxrate.co",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"],
                  "categories": ["fluxrate"]},
        "versions": [{
            "name": "v1", "served": True, "storage": True,
            "subresources": {"status": {}},
            "selectableFields": [{"jsonPath": ".spec.currency"}],
            "additionalPrinterColumns": [
                {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
                {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
            ],
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {
                    "spec": {
                        "type": "object",
                        "required": ["currency"],
                        "x-kubernetes-validations": [{
                            "rule": "!has(oldSelf.locked) || !oldSelf.locked || self.currency == oldSelf.currency",
                            "message": "currency cannot change once locked",
                        }],
                        "properties": {
                            "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
                            "locked": {"type": "boolean"},
                            "size": {"type": "integer", "minimum": 1, "default": 3},
                            "options": {"type": "object", "default": {},
                                        "properties": {"color": {"type": "string", "default": "blue"}}},
                            "lineItems": {"type": "array", "items": {
                                "type": "object", "required": ["quantity"],
                                "properties": {"quantity": {"type": "integer", "minimum": 1},
                                               "amount": {"x-kubernetes-int-or-string": True}}}},
                            "labelsCopy": {"type": "object", "additionalProperties": {"type": "string"}},
                            "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                            "note": {"type": "string", "nullable": True},
                            "contact": {"type": "string", "format": "email"},
                            "url": {"type": "string",
                                    "x-kubernetes-validations": [{"rule": "isURL(self)", "message": "bad url"}]},
                        },
                    },
                    "status": {"type": "object", "properties": {
                        "phase": {"type": "string", "enum": ["Pending", "Ready"]},
                        "conditions": {"type": "array", "items": {"type": "object",
                                       "x-kubernetes-preserve-unknown-fields": True}},
                    }},
                },
            }},
        }],
    },
}


def widget(name: str = "w1", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "test.fluxrate.co/v1", "kind": "Widget", "metadata": {"name": name},
            "spec": {"currency": "USD", **spec}}


@pytest.fixture
async def kube(tmp_path: Path) -> AsyncIterator[KubeSandbox]:
    async with KubeSandbox(state_dir=tmp_path / "kube", bookmark_interval=0.2) as sandbox:
        yield sandbox


@pytest.fixture
def widget_crd(kube: KubeSandbox) -> dict[str, Any]:
    return kube.apply_crd(copy.deepcopy(WIDGET_CRD))


@pytest.fixture
async def api(kube: KubeSandbox) -> AsyncIterator[aiohttp.ClientSession]:
    async with kube.client(timeout=aiohttp.ClientTimeout(total=20)) as session:
        yield session


async def until(predicate: Any, timeout: float = 10, interval: float = 0.05) -> Any:
    """Poll until predicate() is truthy (return it) or fail after `timeout` seconds."""
    import asyncio

    async with asyncio.timeout(timeout):
        while not (result := predicate()):  # noqa: ASYNC110 -- polls state that has no change event
            await asyncio.sleep(interval)
        return result
