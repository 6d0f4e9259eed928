from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import pytest
from kubernetes_asyncio import client

from fluxrate.kube import Kube
from fluxrate.operator.integrations import WATCH_LABEL, WATCH_LABEL_VALUE
from fluxrate.operator.main import running_operator
from fluxrate.operator.settings import OperatorSettings, SmtpSettings
from fluxrate_sandbox.kube_server import KubeSandbox
from fluxrate_sandbox.smtp_sink import SmtpSink
from fluxrate_sandbox.stripe_standin import StripeStandin

from ..conftest import GROUP_VERSION, eventually, secret_manifest

PUBLIC_BASE_URL = "https://billing.example.test"


@pytest.fixture
def operator_settings(stripe_standin: StripeStandin, smtp_sink: SmtpSink) -> OperatorSettings:
    return OperatorSettings(
        public_base_url=PUBLIC_BASE_URL,
        stripe_api_base=stripe_standin.url,
        stripe_max_network_retries=1,
        resync_interval=600,
        reconcile_interval=600,
        smtp=SmtpSettings(host=smtp_sink.host, port=smtp_sink.port, security="none"),
    )


@pytest.fixture
async def operator(kube: KubeSandbox, operator_settings: OperatorSettings) -> AsyncIterator[OperatorSettings]:
    async with running_operator(operator_settings):
        yield operator_settings


class Cluster:
    """Test-side kubectl: create objects and read them back through the real API."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    async def apply_secret(self, namespace: str, name: str, data: dict[str, str], *, labelled: bool = True) -> None:
        """Create or replace a Secret, labelled ``billing.fluxrate.co/watch=true`` as the guide says unless not."""
        body = secret_manifest(namespace, name, data)
        if labelled:
            body["metadata"]["labels"] = {WATCH_LABEL: WATCH_LABEL_VALUE}
        try:
            await self.kube.core.create_namespaced_secret(namespace, body)
        except client.ApiException as exc:
            if exc.status != 409:
                raise
            await self.kube.core.replace_namespaced_secret(name, namespace, body)

    async def create(self, plural: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        body = {"apiVersion": GROUP_VERSION, **body}
        body["metadata"] = {**body.get("metadata", {}), "namespace": namespace}
        return await self.kube.custom.create_namespaced_custom_object(
            *GROUP_VERSION.split("/"), namespace, plural, body
        )

    async def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        return await self.kube.get_object(plural, namespace, name)

    async def patch(self, plural: str, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return await self.kube.patch_object(plural, namespace, name, patch)

    async def delete(self, plural: str, namespace: str, name: str) -> None:
        await self.kube.custom.delete_namespaced_custom_object(*GROUP_VERSION.split("/"), namespace, plural, name)

    async def events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        listing = await self.kube.core.list_namespaced_event(namespace)
        return [
            {"reason": e.reason, "message": e.message, "type": e.type}
            for e in listing.items
            if e.involved_object and e.involved_object.name == name
        ]

    async def condition(self, plural: str, namespace: str, name: str, type_: str) -> dict[str, Any] | None:
        obj = await self.get(plural, namespace, name)
        for condition in ((obj or {}).get("status") or {}).get("conditions") or []:
            if condition["type"] == type_:
                return condition
        return None

    async def wait_condition(
        self, plural: str, namespace: str, name: str, type_: str, *, status: str | None = None,
        reason: str | None = None, timeout: float = 15.0,
    ) -> dict[str, Any]:
        def ok(found: dict[str, Any] | None) -> bool:
            return bool(found) and (status is None or found["status"] == status) and (
                reason is None or found["reason"] == reason
            )

        return await eventually(lambda: self.condition(plural, namespace, name, type_), ok, timeout=timeout)


@pytest.fixture
async def cluster(kube_client: Kube) -> Cluster:
    return Cluster(kube_client)


def secrets_to_search(standin: StripeStandin) -> list[str]:
    """Every secret the stand-in ever issued, not only those of endpoints that still exist at teardown."""
    return list(standin.issued_secrets)


def leaks(secrets: Iterable[str], haystacks: Mapping[str, str]) -> list[str]:
    """Where each secret (or its base64) shows up in ``haystacks``, as "<kind> in <where>"; the secrets are not
    named, so the failure message cannot leak them either."""
    found = []
    for secret in secrets:
        encoded = base64.b64encode(secret.encode()).decode()
        for where, text in haystacks.items():
            if secret in text:
                found.append(f"a secret in {where}")
            if encoded in text:
                found.append(f"a base64-encoded secret in {where}")
    return found


def haystacks_of(sandbox: KubeSandbox, records: Iterable[logging.LogRecord]) -> dict[str, str]:
    """The logs (DEBUG included), Invoice and StripeIntegration statuses and Events of a test."""
    haystacks = {"logs": "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in records)}
    for plural in ("stripeintegrations", "invoices"):
        haystacks[f"{plural} status"] = json.dumps(
            [obj.get("status") for obj in sandbox.list_objects(GROUP_VERSION, plural)]
        )
    haystacks["events"] = json.dumps(sandbox.list_objects("v1", "events"))
    return haystacks


@pytest.fixture(autouse=True)
async def no_secret_leaks(
    kube: KubeSandbox, caplog: pytest.LogCaptureFixture, stripe_standin: StripeStandin
) -> AsyncIterator[None]:
    """Every operator test ends by searching its logs, Events and statuses for every secret the stand-in ever
    issued: keys, and signing secrets of endpoints since deleted or rolled included."""
    caplog.set_level(logging.DEBUG)
    yield
    records = [*caplog.get_records("setup"), *caplog.get_records("call")]
    assert leaks(secrets_to_search(stripe_standin), haystacks_of(kube, records)) == []
