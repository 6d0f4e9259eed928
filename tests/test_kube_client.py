"""The Kubernetes client fluxrate builds: the environment's proxy is honoured, resolved once, not per request."""

from __future__ import annotations

import pytest

from fluxrate.kube import Kube, new_api_client
from fluxrate.sandbox.kube_server import KubeSandbox


async def test_api_server_proxy_comes_from_the_environment_once(kube: KubeSandbox,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    api = await new_api_client()
    try:
        assert api.rest_client.proxy == "http://proxy.example:3128"
        assert api.rest_client.pool_manager.trust_env is False  # no proxy/netrc lookup in a thread per request
    finally:
        await api.close()

    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    direct = Kube(await new_api_client())
    try:
        assert direct.api.rest_client.proxy is None
        assert await direct.get_object("invoices", "default", "none") is None  # the API answers through it
    finally:
        await direct.close()
