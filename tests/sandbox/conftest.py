"""Fixtures for the Kubernetes API tests, which run against two backends: the emulator and the real API server.

``kube`` is a :class:`Backend` parametrized over ``emulator`` (a fresh ``KubeSandbox`` per test, objects in
``default``) and ``real`` (the session's real control plane from tests/conftest.py, a fresh namespace per test,
emptied and deleted afterwards). Tests marked ``emulator_only`` (fault knobs, in-process store access,
emulator-only features) run on the emulator alone and reach it through ``kube.sandbox``.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from fluxrate_sandbox.kube_kopf import kopf_peering_crds, kopf_peering_object
from fluxrate_sandbox.kube_server import KubeSandbox, _documents
from fluxrate_sandbox.real_kube import KubeRequestError, RealKube, collection_path

REPO = Path(__file__).resolve().parents[2]
BACKENDS = ("emulator", "real")
EMULATOR_ONLY = "emulator_only"
WIDGET_API = "test.fluxrate.co/v1"
_namespaces = itertools.count(1)

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
    return {"apiVersion": WIDGET_API, "kind": "Widget", "metadata": {"name": name},
            "spec": {"currency": "USD", **spec}}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{EMULATOR_ONLY}: runs on the Kubernetes API emulator only (a fault knob, "
                                       "in-process store access or an emulator-only feature)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test using ``kube`` runs on both backends, unless it is marked ``emulator_only``."""
    if "kube" in metafunc.fixturenames:
        only = metafunc.definition.get_closest_marker(EMULATOR_ONLY) is not None
        metafunc.parametrize("backend_name", ["emulator"] if only else list(BACKENDS), indirect=True)


class Backend:
    """One Kubernetes API server as the tests see it: HTTP access, a namespace, and async object helpers."""

    def __init__(self, name: str, server: KubeSandbox | RealKube, namespace: str) -> None:
        self.name = name
        self.server = server
        self.namespace = namespace

    @property
    def real(self) -> bool:
        return self.name == "real"

    @property
    def sandbox(self) -> KubeSandbox:
        """The emulator itself, for tests marked ``emulator_only``."""
        assert isinstance(self.server, KubeSandbox), "only the emulator has in-process state: mark the test"
        return self.server

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def kubeconfig(self) -> Path:
        return self.server.kubeconfig

    @property
    def token(self) -> str:
        return self.server.token

    @property
    def widgets(self) -> str:
        """The Widget collection of this test's namespace."""
        return collection_path(WIDGET_API, "widgets", self.namespace)

    def ssl_context(self) -> Any:
        return self.server.ssl_context()

    def client(self, **kwargs: Any) -> aiohttp.ClientSession:
        return self.server.client(**kwargs)

    async def apply_crds(self, source: Path | str | Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        crds = [c for c in _documents(source) if c.get("kind") == "CustomResourceDefinition"]
        if isinstance(self.server, KubeSandbox):
            return await self.server.apply_crds(copy.deepcopy(crds))
        return await self.server.apply_crds(crds)

    async def apply_kopf_peering(self) -> None:
        """kopf's peering CRDs and the cluster-wide ``default`` ClusterKopfPeering."""
        if isinstance(self.server, KubeSandbox):
            self.server.apply_kopf_peering()
            return
        await self.server.apply_crds(kopf_peering_crds())
        await self.server.apply(kopf_peering_object("default", None))

    async def get_object(self, api_version: str, plural: str, name: str,
                         namespace: str | None = "") -> dict[str, Any] | None:
        """``namespace=""`` means this test's namespace, ``None`` a cluster-scoped object."""
        ns = self.namespace if namespace == "" else namespace
        if isinstance(self.server, KubeSandbox):
            return self.server.get_object(api_version, plural, ns, name)
        return await self.server.get_object(api_version, plural, ns, name)

    async def list_objects(self, api_version: str, plural: str) -> list[dict[str, Any]]:
        if isinstance(self.server, KubeSandbox):
            return self.server.list_objects(api_version, plural, self.namespace)
        return await self.server.list_objects(api_version, plural, self.namespace)

    async def create_object(self, body: dict[str, Any]) -> dict[str, Any]:
        body = {**body, "metadata": {**body["metadata"], "namespace": self.namespace}}
        if isinstance(self.server, KubeSandbox):
            return self.server.create_object(body)
        return await self.server.create_object(body)

    async def wait_gone(self, path: str, timeout: float = 60) -> None:
        """Until GET ``path`` answers 404 (deletions the real server finishes in the background)."""
        async with self.client() as api, asyncio.timeout(timeout):
            while True:
                async with api.get(path) as response:
                    if response.status == 404:
                        return
                await asyncio.sleep(0.1)


@pytest.fixture(scope="session")
def real_widget_cluster(real_kube_cluster: RealKube) -> RealKube:
    asyncio.run(real_kube_cluster.apply_crds([copy.deepcopy(WIDGET_CRD)]))
    return real_kube_cluster


@pytest.fixture
def backend_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def real_cluster(request: pytest.FixtureRequest, backend_name: str) -> RealKube | None:
    """The session's real control plane when the test runs on it (resolved outside the test's event loop)."""
    return request.getfixturevalue("real_widget_cluster") if backend_name == "real" else None


@pytest.fixture
async def kube(real_cluster: RealKube | None, tmp_path: Path) -> AsyncIterator[Backend]:
    if real_cluster is None:
        async with KubeSandbox(state_dir=tmp_path / "kube", bookmark_interval=0.2) as sandbox:
            yield Backend("emulator", sandbox, "default")
        return
    cluster = real_cluster
    namespace = f"sandbox-{next(_namespaces)}"
    await cluster.create_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    try:
        yield Backend("real", cluster, namespace)
    finally:
        await _empty_namespace(cluster, namespace)


async def _empty_namespace(cluster: RealKube, namespace: str) -> None:
    """Delete the test's namespace; its widgets go at once (finalizers dropped) so cluster-wide lists stay clean."""
    await cluster.apply_crds([copy.deepcopy(WIDGET_CRD)])  # a test may have deleted it
    await until(lambda: _widgets_served(cluster, namespace), timeout=30, interval=0.2)
    for obj in await cluster.list_objects(WIDGET_API, "widgets", namespace):
        if obj["metadata"].get("finalizers"):
            await cluster.patch_object(WIDGET_API, "widgets", namespace, obj["metadata"]["name"],
                                       {"metadata": {"finalizers": None}})
    await cluster.request("DELETE", collection_path(WIDGET_API, "widgets", namespace))
    try:
        await cluster.request("DELETE", f"/api/v1/namespaces/{namespace}")
    except KubeRequestError as exc:
        if exc.status != 404:
            raise


async def _widgets_served(cluster: RealKube, namespace: str) -> bool:
    """A re-created CRD answers 429 ("storage is (re)initializing") for a moment."""
    try:
        await cluster.list_objects(WIDGET_API, "widgets", namespace)
    except KubeRequestError as exc:
        if exc.status in (404, 429):
            return False
        raise
    return True


@pytest.fixture
def widget_crd(kube: Backend) -> dict[str, Any]:
    """The Widget CRD as served (the real backend has it for the whole session)."""
    if isinstance(kube.server, KubeSandbox):
        return kube.server.apply_crd(copy.deepcopy(WIDGET_CRD))
    return copy.deepcopy(WIDGET_CRD)


@pytest.fixture
def widgets(kube: Backend, widget_crd: dict[str, Any]) -> str:
    """The Widget collection URL of the test's namespace, with the CRD served."""
    return kube.widgets


@pytest.fixture
async def api(kube: Backend) -> AsyncIterator[aiohttp.ClientSession]:
    async with kube.client(timeout=aiohttp.ClientTimeout(total=20)) as session:
        yield session


async def until(predicate: Any, timeout: float = 10, interval: float = 0.05) -> Any:
    """Poll until predicate() (sync or async) is truthy (return it) or fail after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while True:
            result = predicate()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return result
            await asyncio.sleep(interval)
