"""Fixtures of the real-server tier: a control plane of one's own, for tests that install the chart or restart it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fluxrate_sandbox.real_kube import RealKube
from tests.conftest import start_real_kube


@pytest.fixture
def own_real_kube(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RealKube]:
    """A fresh real kube-apiserver, etcd and controller-manager for this test alone (about 4 s to start)."""
    cluster = start_real_kube(tmp_path / "kube")
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    try:
        yield cluster
    finally:
        cluster.stop()
