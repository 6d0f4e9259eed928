"""Kubernetes access for what kopf does not do for us: Secrets, status writes from the receiver, Events.

Built on kubernetes_asyncio with the ordinary credential chain: ``$KUBECONFIG`` (or ~/.kube/config) when
present, else the in-cluster service account.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import logging
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import aiohttp.helpers
import yarl
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from fluxrate import API_GROUP, API_VERSION

MERGE_PATCH = "application/merge-patch+json"

# kubernetes_asyncio logs whole response bodies, Secrets included, at DEBUG: never let it.
logging.getLogger("kubernetes_asyncio.client.rest").setLevel(logging.INFO)


@dataclass(frozen=True)
class ObjectRef:
    kind: str
    namespace: str
    name: str
    uid: str | None = None
    api_version: str = f"{API_GROUP}/{API_VERSION}"
    resource_version: str | None = None

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> ObjectRef:
        meta = body["metadata"]
        return cls(
            kind=body["kind"], namespace=meta["namespace"], name=meta["name"], uid=meta.get("uid"),
            api_version=body.get("apiVersion", f"{API_GROUP}/{API_VERSION}"),
        )


def _kubeconfig_path() -> str | None:
    path = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    return path if Path(path).is_file() else None


async def new_api_client() -> client.ApiClient:
    configuration = client.Configuration()
    kubeconfig = _kubeconfig_path()
    if kubeconfig:
        await config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    else:
        config.load_incluster_config(client_configuration=configuration)
    if not configuration.proxy:
        with contextlib.suppress(LookupError):  # HTTPS_PROXY / NO_PROXY for the API server, resolved once
            proxy, _ = aiohttp.helpers.get_env_proxy_for_url(yarl.URL(configuration.host))
            configuration.proxy = str(proxy)
    api = client.ApiClient(configuration)
    # kubernetes_asyncio's session trusts the environment, so aiohttp looks up proxies and ~/.netrc in a worker
    # thread on every request (40 % of the receiver's CPU when applying payments). Same connector, no lookups.
    trusting = api.rest_client.pool_manager
    api.rest_client.pool_manager = aiohttp.ClientSession(connector=trusting.connector, read_bufsize=2**21)
    trusting.detach()
    return api


def decode_secret_data(secret: Any) -> dict[str, str]:
    data = secret.data if hasattr(secret, "data") else secret.get("data")
    return {key: base64.b64decode(value).decode("utf-8", errors="replace") for key, value in (data or {}).items()}


class Kube:
    """A thin, typed façade; every method is one API request."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    @classmethod
    async def connect(cls) -> Kube:
        return cls(await new_api_client())

    async def close(self) -> None:
        await self.api.close()

    # --- Secrets ---------------------------------------------------------------------------------------

    async def read_secret(self, namespace: str, name: str) -> dict[str, str] | None:
        """Decoded data of a Secret, or None when it does not exist."""
        found = await self.read_secret_and_labels(namespace, name)
        return None if found is None else found[0]

    async def read_secret_and_labels(
        self, namespace: str, name: str
    ) -> tuple[dict[str, str], dict[str, str]] | None:
        """Decoded data and the labels of a Secret (one request), or None when it does not exist."""
        try:
            secret = await self.core.read_namespaced_secret(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return decode_secret_data(secret), dict(secret.metadata.labels or {})

    async def write_owned_secret(
        self, owner: ObjectRef, name: str, data: Mapping[str, str], labels: Mapping[str, str]
    ) -> None:
        """Create or update a Secret owned by ``owner`` alone (garbage-collected with it)."""
        body = client.V1Secret(
            metadata=client.V1ObjectMeta(
                name=name,
                namespace=owner.namespace,
                labels=dict(labels),
                owner_references=[
                    client.V1OwnerReference(
                        api_version=owner.api_version, kind=owner.kind, name=owner.name, uid=owner.uid,
                        controller=True, block_owner_deletion=True,
                    )
                ],
            ),
            type="Opaque",
            string_data=dict(data),
        )
        try:
            await self.core.create_namespaced_secret(owner.namespace, body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            # A JSON merge patch replaces ownerReferences whole. A strategic merge patch merges them by uid, so a
            # Secret still owned by an earlier integration of the same name would get two controllers (422).
            patch = self.api.sanitize_for_serialization(body)
            await self.core.patch_namespaced_secret(name, owner.namespace, patch, _content_type=MERGE_PATCH)

    # --- custom objects --------------------------------------------------------------------------------

    async def get_object(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self.custom.get_namespaced_custom_object(API_GROUP, API_VERSION, namespace, plural, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def find_invoice_by_payment(self, namespace: str, payment_id: str) -> dict[str, Any] | None:
        """The invoice of ``namespace`` that recorded the payment ``payment_id`` (pi_...), None when none did: the
        API server filters by the CRD's selectable field, so this never transfers every invoice."""
        found = await self.custom.list_namespaced_custom_object(
            API_GROUP, API_VERSION, namespace, "invoices", limit=2,
            field_selector=f"status.payment.providerPaymentId={payment_id}",
        )
        items = found.get("items") or []
        if not items:
            return None
        invoice: dict[str, Any] = items[0]
        invoice.setdefault("apiVersion", f"{API_GROUP}/{API_VERSION}")
        invoice.setdefault("kind", "Invoice")
        return invoice

    async def patch_object(self, plural: str, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        return await self.custom.patch_namespaced_custom_object(
            API_GROUP, API_VERSION, namespace, plural, name, dict(patch), _content_type=MERGE_PATCH
        )

    async def patch_status(
        self, plural: str, namespace: str, name: str, status: Mapping[str, Any], *, resource_version: str | None = None
    ) -> dict[str, Any]:
        """Merge-patch ``status``; with ``resource_version`` the write fails with 409 if the object changed."""
        body: dict[str, Any] = {"status": dict(status)}
        if resource_version is not None:
            body["metadata"] = {"resourceVersion": resource_version}
        return await self.custom.patch_namespaced_custom_object_status(
            API_GROUP, API_VERSION, namespace, plural, name, body, _content_type=MERGE_PATCH
        )

    # --- Events ----------------------------------------------------------------------------------------

    async def post_event(
        self, ref: ObjectRef, *, reason: str, message: str, type_: str = "Normal", component: str = "fluxrate"
    ) -> None:
        moment = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{ref.name}.{uuid.uuid4().hex[:16]}", "namespace": ref.namespace},
            "involvedObject": {"apiVersion": ref.api_version, "kind": ref.kind, "name": ref.name,
                               "namespace": ref.namespace, "uid": ref.uid},
            "reason": reason, "message": message[:1024], "type": type_, "source": {"component": component},
            "firstTimestamp": moment, "lastTimestamp": moment, "count": 1, "reportingComponent": component,
        }
        # A plain body and the answer left unparsed: building and parsing CoreV1Event models (dateutil for every
        # timestamp) cost the receiver as much CPU as the payment's status write.
        answer = await self.core.create_namespaced_event(ref.namespace, event, _preload_content=False)
        try:
            if not 200 <= answer.status <= 299:
                raise ApiException(status=answer.status, reason=answer.reason)
        finally:
            answer.release()
