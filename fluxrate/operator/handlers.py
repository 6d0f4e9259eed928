"""kopf handler registration: thin wrappers that call the logic modules and apply their outcomes."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any

import kopf

from fluxrate import API_GROUP, API_VERSION
from fluxrate.kube import Kube
from fluxrate.models import StripeIntegrationSpec
from fluxrate.operator import integrations
from fluxrate.operator.integrations import Event, IntegrationObject, Outcome
from fluxrate.operator.settings import OperatorSettings
from fluxrate.operator.stripe_clients import StripeClients

PREFIX = f"operator.{API_GROUP}"  # kopf ignores its own prefix in diffs: keep ours out of it
SECRET_TRIGGER_ANNOTATION = f"{API_GROUP}/secret-changed"
INTEGRATIONS = (API_GROUP, API_VERSION, "stripeintegrations")


class Runtime:
    """What the handlers share, kept in kopf's memo."""

    def __init__(self, config: OperatorSettings, kube: Kube) -> None:
        self.config = config
        self.kube = kube
        self.clients = StripeClients(
            api_base=config.stripe_api_base,
            max_network_retries=config.stripe_max_network_retries,
            rate_limit_test=config.rate_limit_test,
            rate_limit_live=config.rate_limit_live,
        )
        self.locks: defaultdict[tuple[str, str, str], asyncio.Lock] = defaultdict(asyncio.Lock)

    def lock(self, kind: str, namespace: str, name: str) -> asyncio.Lock:
        return self.locks[(kind, namespace, name)]


def post_events(body: Any, events: list[Event]) -> None:
    for event in events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)


def apply_outcome(body: Any, patch: kopf.Patch, outcome: Outcome) -> None:
    for key, value in outcome.status.items():
        patch.status[key] = value
    post_events(body, outcome.events)


def integration_object(body: Any) -> IntegrationObject:
    meta = body["metadata"]
    return IntegrationObject(
        namespace=meta["namespace"],
        name=meta["name"],
        uid=meta["uid"],
        generation=int(meta.get("generation") or 1),
        spec=StripeIntegrationSpec.model_validate(dict(body.get("spec") or {})),
        status=dict(body.get("status") or {}),
        annotations=dict(meta.get("annotations") or {}),
    )


def register(registry: kopf.OperatorRegistry, config: OperatorSettings) -> None:
    """Register every handler on ``registry`` with intervals taken from ``config``."""

    @kopf.on.startup(registry=registry)
    async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        # Progress and diff-base in annotations: a real API server prunes undeclared status fields.
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=PREFIX, key="last-handled-configuration"
        )
        settings.persistence.finalizer = f"{API_GROUP}/finalizer"
        settings.posting.level = logging.WARNING
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        settings.networking.request_timeout = 60
        memo.runtime = Runtime(config, await Kube.connect())

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        """$KUBECONFIG (or ~/.kube/config) when present, else the in-cluster service account."""
        return kopf.login_with_kubeconfig(**kwargs) or kopf.login_with_service_account(**kwargs)

    @kopf.on.cleanup(registry=registry)
    async def close(memo: kopf.Memo, **_: Any) -> None:
        runtime: Runtime = memo.runtime
        await runtime.clients.close()
        await runtime.kube.close()

    # --- StripeIntegration ---------------------------------------------------------------------------------

    @kopf.index(*INTEGRATIONS, registry=registry, id="integrations_by_secret")
    def integrations_by_secret(namespace: str, name: str, spec: kopf.Spec, **_: Any) -> dict[tuple[str, str], str]:
        refs = [spec.get("secretKeyRef"), spec.get("webhookSecretRef")]
        return {(namespace, ref["name"]): name for ref in refs if ref and ref.get("name")}

    async def reconcile(body: Any, patch: kopf.Patch, memo: kopf.Memo) -> Outcome:
        runtime: Runtime = memo.runtime
        obj = integration_object(body)
        async with runtime.lock("integration", obj.namespace, obj.name):
            outcome = await integrations.reconcile_integration(
                obj, runtime.kube, runtime.clients, runtime.config.public_base_url, runtime.config.retry_delay
            )
        apply_outcome(body, patch, outcome)
        return outcome

    @kopf.on.resume(*INTEGRATIONS, registry=registry)
    @kopf.on.create(*INTEGRATIONS, registry=registry)
    @kopf.on.update(*INTEGRATIONS, registry=registry)
    async def integration_changed(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
        outcome = await reconcile(body, patch, memo)
        if outcome.retry_after is not None:
            raise kopf.TemporaryError(outcome.status["conditions"][0]["message"], delay=outcome.retry_after)

    @kopf.timer(*INTEGRATIONS, registry=registry, interval=config.resync_interval,
                initial_delay=config.resync_interval, idle=min(60.0, config.resync_interval))
    async def integration_resync(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
        """Re-verify the key and repair the managed endpoint's drift (edited or deleted in Stripe)."""
        if body["metadata"].get("deletionTimestamp"):
            return
        await reconcile(body, patch, memo)

    @kopf.on.delete(*INTEGRATIONS, registry=registry, retries=5, backoff=5)
    async def integration_deleted(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        runtime: Runtime = memo.runtime
        obj = integration_object(body)
        async with runtime.lock("integration", obj.namespace, obj.name):
            events = await integrations.disconnect_integration(obj, runtime.clients, runtime.kube)
        post_events(body, events)

    @kopf.on.event("", "v1", "secrets", registry=registry)
    async def secret_changed(
        type: str | None, namespace: str, name: str, meta: kopf.Meta, memo: kopf.Memo,
        integrations_by_secret: kopf.Index[tuple[str, str], str], **_: Any,
    ) -> None:
        """A referenced Secret changed (key rotation): poke its integrations so they re-reconcile now."""
        if type is None or (namespace, name) not in integrations_by_secret:
            return  # the initial listing, or a Secret no integration references
        runtime: Runtime = memo.runtime
        marker = f"{name}@{meta.get('resourceVersion', '')}" if type != "DELETED" else f"{name}@deleted"
        for integration in set(integrations_by_secret[(namespace, name)]):
            try:
                await runtime.kube.patch_object(
                    "stripeintegrations", namespace, integration,
                    {"metadata": {"annotations": {SECRET_TRIGGER_ANNOTATION: marker}}},
                )
            except Exception as exc:  # the integration may be going away; the resync timer still catches up
                if not getattr(exc, "status", None) == 404:
                    raise
