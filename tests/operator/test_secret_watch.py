"""The operator watches only Secrets labelled billing.fluxrate.co/watch=true, filtered by the API server."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from fluxrate.operator.handlers import server_side_selectors
from fluxrate.operator.integrations import (
    WATCH_SELECTOR,
    build_secrets_watched,
    secrets_watched_events,
)
from fluxrate.operator.main import running_operator
from fluxrate.operator.settings import OperatorSettings
from fluxrate_sandbox.kube_server import KubeSandbox
from fluxrate_sandbox.stripe_standin import StripeStandin

from ..conftest import eventually
from .conftest import Cluster
from .test_integrations import SI, integration

KUBECTL = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")
SECRETS_COLLECTION = re.compile(r"^/api/v1/(namespaces/[^/]+/)?secrets$")


def requests_for(kube: KubeSandbox, collection: re.Pattern[str]) -> list[dict[str, list[str]]]:
    """Query parameters of every GET (list or watch) the API server answered on a collection."""
    found = []
    for method, path_qs, _status in kube.emulator.request_log:
        url = urlsplit(path_qs)
        if method == "GET" and collection.match(url.path):
            found.append({"path": [url.path], **parse_qs(url.query)})
    return found


async def watch_requests(kube: KubeSandbox, collection: re.Pattern[str]) -> list[dict[str, list[str]]]:
    """Every list and watch request on the collection so far, watches included: the emulator logs a request when
    it is answered, so end the open watch streams (the operator reconnects) and wait for them to be logged."""
    kube.emulator.break_watches()
    return await eventually(lambda: requests_for(kube, collection),
                            lambda requests: any(r.get("watch") == ["true"] for r in requests))


# --- as data --------------------------------------------------------------------------------------------


def test_unlabelled_secrets_are_named_with_the_command_that_labels_them() -> None:
    watched = build_secrets_watched("team-a", {"stripe-credentials": False, "stripe-webhook": True})
    assert (watched.type, watched.status, watched.reason) == ("SecretsWatched", "False", "SecretNotLabelled")
    assert '"stripe-credentials"' in watched.message and '"stripe-webhook"' not in watched.message
    assert watched.message.endswith(
        "kubectl label secret stripe-credentials billing.fluxrate.co/watch=true -n team-a")
    both = build_secrets_watched("team-a", {"a": False, "b": False})
    assert both.message.endswith("kubectl label secret a b billing.fluxrate.co/watch=true -n team-a")
    assert build_secrets_watched("team-a", {"a": True, "b": True}).status == "True"
    assert build_secrets_watched("team-a", {}) is None  # no referenced Secret exists: nothing to say


def test_the_warning_is_posted_once_per_change() -> None:
    unlabelled = build_secrets_watched("ns", {"a": False})
    (event,) = secrets_watched_events(None, unlabelled)
    assert (event.type, event.reason) == ("Warning", "SecretNotLabelled") and event.message == unlabelled.message
    same = {"type": "SecretsWatched", "status": "False", "reason": "SecretNotLabelled", "message": unlabelled.message}
    assert secrets_watched_events(same, unlabelled) == []
    assert len(secrets_watched_events(same, build_secrets_watched("ns", {"a": False, "b": False}))) == 1
    assert secrets_watched_events(same, build_secrets_watched("ns", {"a": True})) == []


def test_selectors_sent_to_the_api_server(operator_settings: OperatorSettings) -> None:
    labels, fields = server_side_selectors(operator_settings)
    assert labels == {("", "v1", "secrets"): "billing.fluxrate.co/watch=true"} and fields == {}
    _, fields = server_side_selectors(dataclasses.replace(operator_settings, peering="fluxrate"))
    assert set(fields.values()) == {"metadata.name=fluxrate"}


# --- on the emulator ------------------------------------------------------------------------------------


@pytest.mark.parametrize("namespaces", [(), ("team-in",)], ids=["cluster-wide", "namespaced"])
async def test_secrets_are_listed_and_watched_only_with_the_label_selector(
    kube: KubeSandbox, operator_settings: OperatorSettings, cluster: Cluster, stripe_standin: StripeStandin,
    namespaces: tuple[str, ...],
) -> None:
    namespace = "team-in"
    _, key = stripe_standin.add_account()
    await cluster.apply_secret(namespace, "helm-release-like", {"release": "x" * 4096}, labelled=False)
    await cluster.apply_secret(namespace, "stripe", {"secret-key": key})
    async with running_operator(dataclasses.replace(operator_settings, namespaces=namespaces)):
        await cluster.create(SI, namespace, integration())
        await cluster.wait_condition(SI, namespace, "prod", "Ready", status="True")
        requests = await watch_requests(kube, SECRETS_COLLECTION)  # it does watch Secrets...
    for request in requests:  # ...and never asks for one without the label
        assert request.get("labelSelector") == [WATCH_SELECTOR], request
    expected = {f"/api/v1/namespaces/{namespace}/secrets"} if namespaces else {"/api/v1/secrets"}
    assert {r["path"][0] for r in requests} == expected


async def test_labelled_secret_rotation_is_noticed_at_once(
    operator, cluster: Cluster, stripe_standin: StripeStandin, namespace: str
) -> None:
    account_id, key = stripe_standin.add_account()
    await cluster.apply_secret(namespace, "stripe", {"secret-key": key})
    await cluster.create(SI, namespace, integration())
    watched = await cluster.wait_condition(SI, namespace, "prod", "SecretsWatched", status="True")
    assert watched["reason"] == "SecretsLabelled" and '"stripe"' in watched["message"]
    # operator_settings.resync_interval is 600 s: only the watch can notice this
    await cluster.apply_secret(namespace, "stripe", {"secret-key": stripe_standin.add_key(account_id)})
    await eventually(lambda: cluster.events(namespace, "prod"),
                     lambda events: any(e["reason"] == "KeyRotated" for e in events))
    assert not any(e["reason"] == "SecretNotLabelled" for e in await cluster.events(namespace, "prod"))


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is installed into the venv by the Makefile")
async def test_unlabelled_secret_works_and_says_how_to_label_it(
    operator, cluster: Cluster, stripe_standin: StripeStandin, namespace: str
) -> None:
    account_id, key = stripe_standin.add_account()
    await cluster.apply_secret(namespace, "stripe", {"secret-key": key}, labelled=False)
    await cluster.create(SI, namespace, integration())
    await cluster.wait_condition(SI, namespace, "prod", "Ready", status="True")  # still connects
    watched = await cluster.wait_condition(SI, namespace, "prod", "SecretsWatched", status="False")
    assert watched["reason"] == "SecretNotLabelled"
    command = f"kubectl label secret stripe billing.fluxrate.co/watch=true -n {namespace}"
    assert watched["message"].endswith(command) and "next resync" in watched["message"]
    assert await cluster.condition(SI, namespace, "prod", "Stalled") is None

    # Another reconcile (a spec change) keeps the condition but does not repeat the Warning.
    await cluster.patch(SI, namespace, "prod", {"spec": {"displayName": "again"}})
    await eventually(lambda: cluster.condition(SI, namespace, "prod", "Ready"),
                     lambda ready: ready["observedGeneration"] == 2 and ready["status"] == "True")
    warnings = [e for e in await cluster.events(namespace, "prod") if e["reason"] == "SecretNotLabelled"]
    assert len(warnings) == 1 and warnings[0]["type"] == "Warning" and warnings[0]["message"] == watched["message"]

    # The command from the message, as written: the label is noticed at once, and so is the next rotation.
    argv = shlex.split(command)
    result = await asyncio.to_thread(subprocess.run, [KUBECTL, *argv[1:]], capture_output=True, text=True,
                                     timeout=60)
    assert result.returncode == 0, result.stderr
    await cluster.wait_condition(SI, namespace, "prod", "SecretsWatched", status="True")
    secret = await cluster.kube.core.read_namespaced_secret("stripe", namespace)
    assert secret.metadata.labels == {"billing.fluxrate.co/watch": "true"}
    await cluster.kube.core.patch_namespaced_secret(
        "stripe", namespace, {"data": None, "stringData": {"secret-key": stripe_standin.add_key(account_id)}})
    await eventually(lambda: cluster.events(namespace, "prod"),
                     lambda events: any(e["reason"] == "KeyRotated" for e in events))


async def test_removing_the_label_is_noticed_at_once(
    operator, cluster: Cluster, stripe_standin: StripeStandin, namespace: str
) -> None:
    _, key = stripe_standin.add_account()
    await cluster.apply_secret(namespace, "stripe", {"secret-key": key})
    await cluster.create(SI, namespace, integration(webhookSecretRef={"name": "hook", "key": "signing-secret"}))
    await cluster.apply_secret(namespace, "hook", {"signing-secret": "whsec_" + "a1b2c3d4" * 4})
    watched = await cluster.wait_condition(SI, namespace, "prod", "SecretsWatched", status="True")
    assert '"stripe", "hook"' in watched["message"]
    await cluster.apply_secret(namespace, "hook", {"signing-secret": "whsec_" + "a1b2c3d4" * 4}, labelled=False)
    unwatched = await cluster.wait_condition(SI, namespace, "prod", "SecretsWatched", reason="SecretNotLabelled")
    assert '"hook"' in unwatched["message"] and '"stripe"' not in unwatched["message"]
    assert (await cluster.condition(SI, namespace, "prod", "Ready"))["status"] == "True"
    assert (await cluster.condition(SI, namespace, "prod", "WebhookSecretConfigured"))["status"] == "True"


async def test_managed_signing_secret_carries_the_label(
    operator, cluster: Cluster, stripe_standin: StripeStandin, namespace: str
) -> None:
    _, key = stripe_standin.add_account()
    await cluster.apply_secret(namespace, "stripe", {"secret-key": key})
    await cluster.create(SI, namespace, integration(managed=True))
    await cluster.wait_condition(SI, namespace, "prod", "Ready", status="True")
    name = (await cluster.get(SI, namespace, "prod"))["status"]["webhookSecretName"]
    secret = await cluster.kube.core.read_namespaced_secret(name, namespace)
    assert secret.metadata.labels["billing.fluxrate.co/watch"] == "true"
    # the key Secret is what the integration references; the owned one is not counted as referenced
    watched = await cluster.condition(SI, namespace, "prod", "SecretsWatched")
    assert watched["status"] == "True" and name not in watched["message"]


async def test_ha_peering_is_listed_and_watched_by_name(
    kube: KubeSandbox, operator_settings: OperatorSettings, cluster: Cluster, stripe_standin: StripeStandin,
    namespace: str,
) -> None:
    kube.apply_kopf_peering("fluxrate-ha")
    settings = dataclasses.replace(operator_settings, peering="fluxrate-ha", priority=100)
    _, key = stripe_standin.add_account()
    await cluster.apply_secret(namespace, "stripe", {"secret-key": key})
    async with running_operator(settings):
        await cluster.create(SI, namespace, integration())
        await cluster.wait_condition(SI, namespace, "prod", "Ready", status="True")
        requests = await watch_requests(kube, re.compile(r"^/apis/kopf\.dev/v1/clusterkopfpeerings$"))
    for request in requests:  # so that RBAC can grant list and watch with resourceNames
        assert request.get("fieldSelector") == ["metadata.name=fluxrate-ha"], request


async def test_a_standby_joins_the_peering_only_after_its_delay(
    kube: KubeSandbox, operator_settings: OperatorSettings,
) -> None:
    """Replicas started together must not both act: a standby announces itself (and starts working) late."""
    kube.apply_kopf_peering("fluxrate-ha")

    def peers() -> dict[str, object]:
        return kube.get_object("kopf.dev/v1", "clusterkopfpeerings", None, "fluxrate-ha").get("status") or {}

    settings = dataclasses.replace(operator_settings, peering="fluxrate-ha", priority=100, standby_delay=3.0)
    inside, leave = asyncio.Event(), asyncio.Event()

    async def run() -> None:
        async with running_operator(settings):
            inside.set()
            await leave.wait()

    task = asyncio.create_task(run())
    try:
        await asyncio.sleep(1.0)
        assert not inside.is_set() and peers() == {}, "the standby announced itself before its delay"
        await asyncio.wait_for(inside.wait(), 30)
        await eventually(peers, lambda found: len(found) == 1, timeout=30)
    finally:
        leave.set()
        await task
