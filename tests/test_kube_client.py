"""The Kubernetes client fluxrate builds: the environment's proxy is honoured, resolved once, not per request."""

from __future__ import annotations

import pytest

from fluxrate.kube import Kube, new_api_client
from fluxrate_sandbox.kube_server import KubeSandbox


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


async def test_event_is_posted_on_the_object(kube: KubeSandbox, kube_client: Kube) -> None:
    from fluxrate.kube import ObjectRef

    ref = ObjectRef(kind="Invoice", namespace="default", name="inv-1", uid="u-1")
    await kube_client.post_event(ref, reason="PaymentReceived", message="Paid 236.50 USD.", component="test")
    [event] = kube.emulator.list_objects("v1", "events", "default")
    assert event["involvedObject"] == {"apiVersion": ref.api_version, "kind": "Invoice", "name": "inv-1",
                                       "namespace": "default", "uid": "u-1"}
    assert (event["reason"], event["message"], event["type"], event["count"]) == (
        "PaymentReceived", "Paid 236.50 USD.", "Normal", 1)
    assert event["source"] == {"component": "test"} and event["firstTimestamp"].endswith("Z")


async def test_a_refused_event_raises_with_the_status(kube: KubeSandbox, kube_client: Kube) -> None:
    from kubernetes_asyncio.client.exceptions import ApiException

    from fluxrate.kube import ObjectRef

    kube.faults.fail_next(1, 503, resource="events")
    with pytest.raises(ApiException) as error:
        await kube_client.post_event(ObjectRef(kind="Invoice", namespace="default", name="inv-1", uid="u-1"),
                                     reason="PaymentReceived", message="Paid.")
    assert error.value.status == 503
    assert kube.emulator.list_objects("v1", "events", "default") == []
