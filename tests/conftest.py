"""Fixtures shared by the suites: the sandbox (Kubernetes API, Stripe stand-in, SMTP sink) and the operator."""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from fluxrate import API_GROUP, API_VERSION, crds
from fluxrate.kube import Kube
from fluxrate_sandbox.kube_server import KubeSandbox
from fluxrate_sandbox.processes import WaitTimeout, wait_for
from fluxrate_sandbox.real_kube import RealKube, RealKubeUnavailable, realkube_binary
from fluxrate_sandbox.smtp_sink import SmtpSink
from fluxrate_sandbox.stripe_standin import StripeStandin

T = TypeVar("T")
GROUP_VERSION = f"{API_GROUP}/{API_VERSION}"
_namespaces = itertools.count(1)


@pytest.fixture
async def kube(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[KubeSandbox]:
    async with KubeSandbox(state_dir=tmp_path / "kube", auto_namespaces=True, bookmark_interval=1.0) as sandbox:
        await sandbox.apply_crds(crds.crds_dir())
        monkeypatch.setenv("KUBECONFIG", str(sandbox.kubeconfig))
        yield sandbox


def real_kube_required() -> bool:
    """CI sets FLUXRATE_REQUIRE_REAL_KUBE=1: then a missing real API server fails instead of skipping."""
    return os.environ.get("FLUXRATE_REQUIRE_REAL_KUBE") == "1"


def built_realkube() -> Path:
    """The realkube binary; skips the test when it is not built, or fails it in CI."""
    try:
        return realkube_binary()
    except RealKubeUnavailable as exc:
        if real_kube_required():
            pytest.fail(f"{exc} (FLUXRATE_REQUIRE_REAL_KUBE=1 forbids skipping)", pytrace=False)
        pytest.skip(str(exc))


def start_real_kube(state_dir: Path) -> RealKube:
    """A started real control plane (tests/kube) with fluxrate's CRDs; skips (or fails in CI) when it is not built."""
    cluster = RealKube(state_dir, binary=built_realkube())
    try:
        cluster.start()
        asyncio.run(cluster.apply_crds(crds.crds_dir()))
    except BaseException:
        cluster.stop()
        raise
    return cluster


@pytest.fixture(scope="session")
def real_kube_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealKube]:
    """One real kube-apiserver, etcd and controller-manager for the session; tests keep to their own namespaces."""
    cluster = start_real_kube(tmp_path_factory.mktemp("realkube"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def real_kube(real_kube_cluster: RealKube, monkeypatch: pytest.MonkeyPatch) -> RealKube:
    """The real API server beside the emulator's ``kube``: ``$KUBECONFIG`` points at it as its admin."""
    monkeypatch.setenv("KUBECONFIG", str(real_kube_cluster.kubeconfig))
    return real_kube_cluster


@pytest.fixture
async def kube_client(kube: KubeSandbox) -> AsyncIterator[Kube]:
    client = await Kube.connect()
    yield client
    await client.close()


@pytest.fixture
async def stripe_standin() -> AsyncIterator[StripeStandin]:
    async with StripeStandin(webhook_time_scale=0.0005) as standin:
        yield standin


@pytest.fixture
async def smtp_sink() -> AsyncIterator[SmtpSink]:
    async with SmtpSink() as sink:
        yield sink


@pytest.fixture
def namespace() -> str:
    return f"tenant-{next(_namespaces)}"


async def eventually(
    probe: Callable[[], Awaitable[T] | T], check: Callable[[T], bool] = bool, timeout: float = 15.0,
    interval: float = 0.05,
) -> T:
    """Poll ``probe`` until ``check`` holds; fail with the last value seen."""
    try:
        return await wait_for("a condition", probe, check, timeout, interval)
    except WaitTimeout as exc:
        raise AssertionError(str(exc)) from None


def secret_manifest(namespace: str, name: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }
