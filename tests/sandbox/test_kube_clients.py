"""Real clients against both backends: kubectl, kubernetes_asyncio and an in-process kopf operator."""

from __future__ import annotations

import asyncio
import base64
import copy
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio import watch as k8s_watch

from fluxrate_sandbox.kube_server import KubeSandbox
from tests.sandbox.conftest import REPO, WIDGET_API, WIDGET_CRD, Backend, until, widget

KUBECTL = Path(sys.executable).parent / "kubectl"


async def kubectl(kube: Backend, tmp_path: Path, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        str(KUBECTL), "--kubeconfig", str(kube.kubeconfig), "--cache-dir", str(tmp_path / "kubectl-cache"), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, stdout.decode(), stderr.decode()


def _manifests(tmp_path: Path) -> tuple[Path, Path, str]:
    """(crds dir, manifests dir, short name) — the repo's crds/ and examples/ when they exist."""
    crds, examples = REPO / "crds", REPO / "examples"
    if any(crds.glob("*.yaml")) and any(examples.glob("*.yaml")):
        return crds, examples, "inv"
    own_crds, own = tmp_path / "crds", tmp_path / "manifests"
    own_crds.mkdir()
    own.mkdir()
    (own_crds / "widgets.yaml").write_text(yaml.safe_dump(WIDGET_CRD))
    (own / "secret.yaml").write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"k": "v"}}))
    (own / "widget.yaml").write_text(yaml.safe_dump(widget("w1")))
    return own_crds, own, "wd"


@pytest.mark.skipif(not KUBECTL.exists() and not shutil.which("kubectl"), reason="kubectl binary not installed")
async def test_kubectl_applies_gets_and_deletes_manifests(kube: Backend, tmp_path: Path) -> None:
    crds, manifests, short = _manifests(tmp_path)
    code, out, err = await kubectl(kube, tmp_path, "apply", "-f", str(crds))
    assert code == 0, err
    # The real backend's session cluster has the CRDs already (its fixture applied them).
    assert ("configured" in out or "unchanged" in out) if kube.real else "created" in out, out
    demo = f"{kube.namespace}-demo"
    code, out, err = await kubectl(kube, tmp_path, "create", "namespace", demo)
    assert code == 0, err

    code, out, err = await kubectl(kube, tmp_path, "apply", "-n", demo, "-f", str(manifests))
    assert code == 0, err
    assert out.count("created") == len(list(manifests.glob("*.yaml"))), out
    assert "warning" not in err.lower(), err
    code, out, err = await kubectl(kube, tmp_path, "apply", "-n", demo, "-f", str(manifests))
    assert code == 0, err  # second apply patches (merge patch for CRs, strategic merge for Secrets)
    assert "unchanged" in out

    code, out, err = await kubectl(kube, tmp_path, "get", short, "-n", demo)
    assert code == 0, err
    header, *rows = out.strip().splitlines()
    assert header.split()[0] == "NAME" and rows, out

    # kubectl wait uses client-go's streaming list (sendInitialEvents) and then watches.
    code, out, err = await kubectl(kube, tmp_path, "wait", short, "--all", "-n", demo, "--timeout=10s",
                                   f"--for=jsonpath={{.metadata.namespace}}={demo}")
    assert code == 0, err
    assert "condition met" in out

    code, out, err = await kubectl(kube, tmp_path, "delete", "-n", demo, "-f", str(manifests))
    assert code == 0, err
    assert "deleted" in out
    code, out, err = await kubectl(kube, tmp_path, "get", short, "-n", demo, "-o", "name")
    assert code == 0 and out.strip() == "", (out, err)


async def test_kubectl_imperative_create_sends_protobuf_the_sandbox_decodes(kube: Backend, tmp_path: Path) -> None:
    ns = kube.namespace
    code, _, err = await kubectl(kube, tmp_path, "create", "secret", "generic", "creds", "--from-literal=key=s3cret",
                                 "--type=fluxrate.co/stripe", "-n", ns)
    assert code == 0, err
    secret = await kube.get_object("v1", "secrets", "creds")
    assert secret is not None
    assert secret["data"] == {"key": base64.b64encode(b"s3cret").decode()} and secret["type"] == "fluxrate.co/stripe"
    code, _, err = await kubectl(kube, tmp_path, "create", "configmap", "cfg", "--from-literal=a=b", "-n", ns)
    assert code == 0, err
    assert (await kube.get_object("v1", "configmaps", "cfg"))["data"] == {"a": "b"}
    code, out, err = await kubectl(kube, tmp_path, "label", "configmap", "cfg", "tier=gold", "-n", ns)
    assert code == 0, err
    code, out, err = await kubectl(kube, tmp_path, "get", "cm", "-l", "tier=gold", "-o", "name", "-n", ns)
    assert out.strip() == "configmap/cfg", err


async def test_kubectl_reports_validation_errors(kube: Backend, tmp_path: Path,
                                                 widgets: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**widget("bad"), "spec": {"currency": "usd"}}))
    code, _, err = await kubectl(kube, tmp_path, "apply", "-n", kube.namespace, "-f", str(bad))
    assert code != 0
    assert "spec.currency in body should match '^[A-Z]{3}$'" in err
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(yaml.safe_dump(widget("unknown", colour="red")))
    code, _, err = await kubectl(kube, tmp_path, "apply", "-n", kube.namespace, "-f", str(unknown))
    assert code != 0
    assert 'unknown field "spec.colour"' in err


async def test_kubernetes_asyncio_reads_and_watches_via_kubeconfig(kube: Backend, widgets: str) -> None:
    ns = kube.namespace
    await kube.create_object(widget("w1"))
    api_client = await k8s_config.new_client_from_config(config_file=str(kube.kubeconfig))
    async with api_client:
        custom = k8s_client.CustomObjectsApi(api_client)
        obj = await custom.get_namespaced_custom_object("test.fluxrate.co", "v1", ns, "widgets", "w1")
        assert obj["spec"] == {"currency": "USD", "size": 3, "options": {"color": "blue"}}
        core = k8s_client.CoreV1Api(api_client)
        await core.create_namespaced_secret(ns, {"metadata": {"name": "s"}, "stringData": {"k": "v"}})
        secret = await core.read_namespaced_secret("s", ns)
        assert secret.data == {"k": "dg=="} and secret.type == "Opaque"
        events = []
        async with k8s_watch.Watch() as watcher:
            async for event in watcher.stream(custom.list_namespaced_custom_object, "test.fluxrate.co", "v1",
                                              ns, "widgets", timeout_seconds=1):
                events.append((event["type"], event["object"]["metadata"]["name"]))
        assert events == [("ADDED", "w1")]


async def test_kopf_operator_runs_against_the_sandbox(kube: Backend, widgets: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(kube.kubeconfig))
    registry = kopf.OperatorRegistry()
    deleted: list[str] = []

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_with_kubeconfig(**kwargs)  # reads $KUBECONFIG, including the CA data

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.watching.server_timeout = 5
        settings.posting.enabled = True

    @kopf.on.create("test.fluxrate.co", "v1", "widgets", registry=registry)
    def created(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        patch.status["phase"] = "Ready"
        kopf.info(body, reason="Ready", message="the widget is ready")

    @kopf.on.delete("test.fluxrate.co", "v1", "widgets", registry=registry)
    def removed(name: str, **_: Any) -> None:
        deleted.append(name)

    stop = asyncio.Event()
    operator = asyncio.create_task(kopf.operator(registry=registry, standalone=True, clusterwide=True,
                                                 stop_flag=stop))
    try:
        await kube.create_object(widget("w1"))

        async def running_until(predicate: Any) -> Any:
            async def alive_and(predicate: Any) -> Any:
                assert not operator.done(), operator
                return await predicate()
            return await until(lambda: alive_and(predicate), timeout=20)

        async def current() -> dict[str, Any] | None:
            return await kube.get_object(WIDGET_API, "widgets", "w1")

        async def ready() -> dict[str, Any] | None:
            obj = await current()
            return obj if obj and (obj.get("status") or {}).get("phase") == "Ready" else None

        obj = await running_until(ready)
        assert obj["metadata"]["finalizers"] == ["kopf.zalando.org/KopfFinalizerMarker"]
        # kopf only settles after its annotations are written; let it go idle.
        await asyncio.sleep(0.5)
        settled = await current()
        assert settled is not None
        await asyncio.sleep(0.5)
        assert (await current())["metadata"]["resourceVersion"] == settled["metadata"]["resourceVersion"]  # no loops

        async with kube.client() as api, api.delete(f"{widgets}/w1") as r:
            assert r.status == 200

        async def gone() -> bool:
            return await current() is None

        await running_until(gone)
        assert deleted == ["w1"]

        async def events() -> list[dict[str, Any]]:
            return await kube.list_objects("v1", "events")

        posted = await running_until(events)
        assert [(e["reason"], e["message"], e["involvedObject"]["name"]) for e in posted] == [
            ("Ready", "the widget is ready", "w1")]
    finally:
        stop.set()
        await asyncio.wait_for(operator, 10)


@pytest.mark.emulator_only  # the emulator's own entry point
def test_threaded_sandbox_serves_synchronous_callers(tmp_path: Path) -> None:
    import ssl
    import urllib.request

    from fluxrate_sandbox.kube_server import ThreadedKubeSandbox

    runner = ThreadedKubeSandbox(state_dir=tmp_path / "threaded")
    with runner as kube:
        runner.call(kube.apply_crd, copy.deepcopy(WIDGET_CRD))
        request = urllib.request.Request(f"{kube.url}/apis/test.fluxrate.co/v1",
                                         headers={"Authorization": f"Bearer {kube.token}"})
        context = ssl.create_default_context(cafile=str(kube.ca_file))
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            assert b'"Widget"' in response.read()
    assert not os.path.exists(tmp_path / "nothing")


@pytest.mark.emulator_only  # the emulator's own entry point
async def test_run_kube_sandbox_serves_until_cancelled(tmp_path: Path) -> None:
    from fluxrate_sandbox.kube_server import run_kube_sandbox

    (tmp_path / "crds").mkdir()
    (tmp_path / "crds" / "widgets.yaml").write_text(yaml.safe_dump(WIDGET_CRD))
    ready: asyncio.Future[KubeSandbox] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(run_kube_sandbox(state_dir=tmp_path / "state", crds=tmp_path / "crds",
                                                on_ready=ready.set_result))
    kube = await asyncio.wait_for(ready, 10)
    async with kube.client() as api, api.get("/apis/test.fluxrate.co/v1/namespaces/default/widgets") as response:
        assert response.status == 200
    assert (tmp_path / "state" / "kubeconfig").exists()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_kopf_with_peering_registers_itself(kube: Backend, widgets: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(kube.kubeconfig))
    await kube.apply_kopf_peering()
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.create("test.fluxrate.co", "v1", "widgets", registry=registry)
    def created(patch: kopf.Patch, **_: Any) -> None:
        patch.status["phase"] = "Ready"

    async def peers() -> dict[str, Any]:
        peering = await kube.get_object("kopf.dev/v1", "clusterkopfpeerings", "default", namespace=None)
        return (peering or {}).get("status") or {}

    async def ready() -> bool:
        obj = await kube.get_object(WIDGET_API, "widgets", "w1")
        return ((obj or {}).get("status") or {}).get("phase") == "Ready"

    stop = asyncio.Event()
    operator = asyncio.create_task(kopf.operator(registry=registry, clusterwide=True, peering_name="default",
                                                 stop_flag=stop))
    try:
        [(identity, peer)] = (await until(peers)).items()
        assert peer["lifetime"] == 60
        await kube.create_object(widget("w1"))
        await until(ready, timeout=20)
    finally:
        stop.set()
        await asyncio.wait_for(operator, 10)
    assert identity not in await peers()  # kopf removes itself from the peering on exit
