"""kopf handlers: thin module-level functions that call the logic modules and apply their decisions, and
``register``, which registers them with the intervals of the operator's settings."""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from typing import Any

import kopf
from kubernetes_asyncio.client.exceptions import ApiException

from fluxrate import API_GROUP, API_VERSION
from fluxrate.decision import Decision, backoff
from fluxrate.invoice_status import is_paid
from fluxrate.kube import Kube
from fluxrate.models import StripeIntegrationSpec
from fluxrate.operator import integrations, invoices
from fluxrate.operator.dunning_schedule import dunning_wake
from fluxrate.operator.events import post_events
from fluxrate.operator.integrations import IntegrationObject
from fluxrate.operator.runtime import Runtime
from fluxrate.operator.schedule import needs_reconciliation, renew_link, run_reconciliation
from fluxrate.operator.settings import OperatorSettings
from fluxrate.operator.waiting import waits_for

PREFIX = f"operator.{API_GROUP}"  # kopf ignores its own prefix in diffs: keep ours out of it
SECRET_TRIGGER_ANNOTATION = f"{API_GROUP}/secret-changed"
INTEGRATION_READY_ANNOTATION = f"{API_GROUP}/integration-ready"
INTEGRATIONS = (API_GROUP, API_VERSION, "stripeintegrations")
INVOICES = (API_GROUP, API_VERSION, "invoices")
SECRETS = ("", "v1", "secrets")
PEERINGS = (("kopf.dev", "clusterkopfpeerings"), ("kopf.dev", "kopfpeerings"))
POKE_ATTEMPTS = 3  # tries of waking one waiting invoice (the API server unavailable) before kopf retries the handler

logger = logging.getLogger(__name__)


def apply_decision(body: Any, patch: kopf.Patch, decision: Decision) -> None:
    for key, value in (decision.changes or {}).items():
        patch.status[key] = value
    post_events(body, decision.events)


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


def server_side_selectors(config: OperatorSettings) -> tuple[dict[Any, str], dict[Any, str]]:
    """kopf's (label, field) selectors sent with its list and watch requests, so the API server filters.

    Secrets: only those labelled ``billing.fluxrate.co/watch=true`` (never every Secret of the cluster, Helm
    release Secrets included). Peering (HA): only the peering object of this release, by name, which lets the
    chart grant the peering verbs with ``resourceNames``.
    """
    labels: dict[Any, str] = {SECRETS: integrations.WATCH_SELECTOR}
    fields: dict[Any, str] = {peering: f"metadata.name={config.peering}" for peering in PEERINGS} \
        if config.peering else {}
    return labels, fields


async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, config: OperatorSettings, **_: Any) -> None:
    """kopf's settings (``config`` bound by ``register``), and the ``Runtime`` in the memo."""
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
    # The initial listing in pages: unpaged, 10,000 invoices were one 29 MiB response held (as bytes beside the
    # parsed objects) until every object was resumed: a ~29 MiB RSS peak above the settled size.
    settings.watching.chunk_size = 500
    if config.namespaces:
        # Namespaced installs grant Roles only: don't ask the cluster-wide discovery questions kopf may not.
        settings.scanning.disabled = True
    if not hasattr(settings.watching, "label_selectors"):
        raise kopf.PermanentError("this kopf cannot filter watches server-side (settings.watching."
                                  "label_selectors): install kopf 1.45.2 or newer")
    labels, fields = server_side_selectors(config)
    for resource, selector in labels.items():
        settings.watching.label_selectors[resource] = selector
    for resource, selector in fields.items():
        settings.watching.field_selectors[resource] = selector
    memo.runtime = Runtime(config, await Kube.connect())
    try:
        await memo.runtime.metrics.start(config.metrics_port)
    except OSError as exc:  # a wrong setting: stop with the reason rather than retry silently every minute
        raise kopf.PermanentError(
            f"cannot serve /metrics on port {config.metrics_port} ({exc.strerror}): set FLUXRATE_METRICS_PORT (the "
            "chart's operator.metricsPort) to a free port, or 0 to turn the metrics off") from None


def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """$KUBECONFIG (or ~/.kube/config) when present, else the in-cluster service account."""
    return kopf.login_with_kubeconfig(**kwargs) or kopf.login_with_service_account(**kwargs)


async def close(memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime = memo.runtime
    await runtime.metrics.stop()
    await runtime.clients.close()
    await runtime.kube.close()


# --- StripeIntegration ---------------------------------------------------------------------------------


def integrations_by_secret(namespace: str, name: str, spec: kopf.Spec, **_: Any) -> dict[tuple[str, str], str]:
    refs = [spec.get("secretKeyRef"), spec.get("webhookSecretRef")]
    return {(namespace, ref["name"]): name for ref in refs if ref and ref.get("name")}


async def reconcile_integration(body: Any, patch: kopf.Patch, memo: kopf.Memo) -> Decision:
    runtime: Runtime = memo.runtime
    obj = integration_object(body)
    async with runtime.lock("integration", obj.namespace, obj.name):
        decision = await integrations.reconcile_integration(
            obj, runtime.kube, runtime.clients, runtime.config.public_base_url, runtime.config.retry_delay,
            endpoint_overlap=runtime.config.endpoint_overlap,
        )
    apply_decision(body, patch, decision)
    return decision


async def poke_waiting_invoices(body: Any, memo: kopf.Memo) -> None:
    """The integration is usable: wake the invoices that wait for it (no polling of every invoice)."""
    runtime: Runtime = memo.runtime
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    entry = runtime.clients.get(namespace, name)
    waiting = runtime.waiting.of(namespace, name)
    if entry is None or not (entry.ready and entry.active) or not waiting:
        return
    # unique per poke: a marker equal to one a killed process left behind would be a no-op patch (no event)
    marker = f"{body['metadata'].get('resourceVersion')}.{uuid.uuid4().hex[:8]}"
    poke = {"metadata": {"annotations": {INTEGRATION_READY_ANNOTATION: marker}}}
    failed = [invoice for invoice in waiting if not await poke_invoice(runtime, namespace, invoice, poke)]
    if failed:  # kopf retries the handler (integration_changed, integration_resync), and with it these pokes
        raise kopf.TemporaryError(f"Could not wake {len(failed)} waiting invoice(s) ({', '.join(sorted(failed))}); "
                                  "retrying.", delay=runtime.config.retry_delay)


async def poke_invoice(runtime: Runtime, namespace: str, invoice: str, poke: dict[str, Any]) -> bool:
    """Patch the poke onto a waiting invoice, tried a few times; False when the API server kept refusing it."""
    for attempt in range(POKE_ATTEMPTS):
        try:
            await runtime.kube.patch_object("invoices", namespace, invoice, poke)
            return True
        except ApiException as exc:
            if exc.status == 404:  # deleted meanwhile: nothing waits any more
                return True
            logger.warning("[%s/%s] Could not wake the invoice (attempt %d of %d): %s %s", namespace, invoice,
                           attempt + 1, POKE_ATTEMPTS, exc.status, exc.reason)
            if attempt + 1 < POKE_ATTEMPTS:
                await asyncio.sleep(backoff(0.5, attempt, cap=5.0))
    return False


async def integration_changed(
    body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, retry: int, **_: Any,
) -> None:
    decision = await reconcile_integration(body, patch, memo)
    if decision.retry_after is not None:
        raise kopf.TemporaryError((decision.changes or {})["conditions"][0]["message"],
                                  delay=backoff(decision.retry_after, retry))
    await poke_waiting_invoices(body, memo)


async def integration_resync(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    """Re-verify the key and repair the managed endpoint's drift (edited or deleted in Stripe)."""
    if body["metadata"].get("deletionTimestamp"):
        return
    await reconcile_integration(body, patch, memo)
    await poke_waiting_invoices(body, memo)


async def integration_deleted(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime = memo.runtime
    obj = integration_object(body)
    async with runtime.lock("integration", obj.namespace, obj.name):
        events = await integrations.disconnect_integration(obj, runtime.clients, runtime.kube)
    post_events(body, events)


async def integration_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Keeps the ``fluxrate_integration_ready`` gauge current."""
    meta = body["metadata"]
    memo.runtime.metrics.update_integration(meta["namespace"], meta["name"], None if type == "DELETED" else body)


async def secret_changed(
    type: str | None, namespace: str, name: str, meta: kopf.Meta, memo: kopf.Memo,
    integrations_by_secret: kopf.Index[tuple[str, str], str], **_: Any,
) -> None:
    """A referenced Secret changed (key rotation): poke its integrations so they re-reconcile now.

    Only labelled Secrets arrive here (``server_side_selectors``); removing the label arrives as DELETED, adding
    it as ADDED, and both poke too, so ``SecretsWatched`` follows at once.
    """
    if type is None or (namespace, name) not in integrations_by_secret:
        return  # the initial listing, or a Secret no integration references
    runtime: Runtime = memo.runtime
    # unique per change: a label removed, added and removed again must poke each time
    marker = f"{name}@{meta.get('resourceVersion', '')}{'-deleted' if type == 'DELETED' else ''}"
    for integration in set(integrations_by_secret[(namespace, name)]):
        try:
            await runtime.kube.patch_object(
                "stripeintegrations", namespace, integration,
                {"metadata": {"annotations": {SECRET_TRIGGER_ANNOTATION: marker}}},
            )
        except Exception as exc:  # the integration may be going away; the resync timer still catches up
            if not getattr(exc, "status", None) == 404:
                raise


# --- Invoice -------------------------------------------------------------------------------------------


async def invoice_changed(body: kopf.Body, memo: kopf.Memo, retry: int, **_: Any) -> None:
    runtime: Runtime = memo.runtime
    obj = invoices.InvoiceObject.of(body)
    if body["metadata"].get("deletionTimestamp"):
        return
    async with runtime.lock("invoice", obj.namespace, obj.name):
        result = await runtime.invoices.reconcile(obj)
    post_events(body, result.events)
    if result.retry_after is not None:
        raise kopf.TemporaryError(result.retry_message, delay=backoff(result.retry_after, retry))


async def invoice_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Keeps ``Runtime.waiting`` and ``Runtime.schedule`` current; Paid (by the receiver or by reconciliation):
    deactivate the link at once, then email the receipt."""
    runtime: Runtime = memo.runtime
    status = body.get("status") or {}
    meta = body["metadata"]
    runtime.metrics.update_invoice(meta["namespace"], meta["name"], None if type == "DELETED" else body)
    runtime.waiting.update(meta["namespace"], meta["name"],
                           None if type == "DELETED" else waits_for(body.get("spec") or {}, status))
    live = type != "DELETED" and not meta.get("deletionTimestamp")
    interval = runtime.config.reconcile_interval
    first_at = asyncio.get_running_loop().time() + invoices.jitter_delay(interval, meta["name"])
    runtime.schedule.update(meta["namespace"], meta["name"], body if live else None, first_at,
                            reconcile=needs_reconciliation(status), dunning_at=dunning_wake(runtime, body))
    if type == "DELETED":
        return
    if not meta.get("deletionTimestamp") and invoices.wants_link_work(status):
        await renew_link(runtime, body)
        return
    link_active = any(link.get("active") is True for link in invoices.active_links(status))
    if is_paid(status.get("phase")) and link_active:
        await deactivate_paid_links(runtime, body)
    if not meta.get("deletionTimestamp") and invoices.receipt_state(status) == "send":
        await invoices.deliver_receipt(runtime, body, tries=invoices.RECEIPT_TRIES_IN_EVENT)


async def deactivate_paid_links(runtime: Runtime, body: kopf.Body) -> None:
    obj = invoices.InvoiceObject.of(body)
    async with runtime.lock("invoice", obj.namespace, obj.name):
        latest = await runtime.kube.get_object("invoices", obj.namespace, obj.name)
        if latest is None:
            return
        result = await runtime.invoices.deactivate_if_needed(invoices.InvoiceObject.of(latest), None,
                                                             "the invoice is paid")
    post_events(body, result.events)


async def invoice_reconciliation(namespace: str, name: str, body: kopf.Body, memo: kopf.Memo,
                                 stopped: kopf.DaemonStopped, **_: Any) -> None:
    """Reconciles this integration's invoices that need it, and runs their reminders (``schedule.run_reconciliation``;
    ``body`` is kopf's live view of the integration, so its reminder schedule is current)."""
    await run_reconciliation(memo.runtime, namespace, name, stopped, body)


async def invoice_deleted(body: kopf.Body, memo: kopf.Memo, retry: int, **_: Any) -> None:
    """Deleting an invoice with an open link: make sure nobody can pay it any more."""
    runtime: Runtime = memo.runtime
    obj = invoices.InvoiceObject.of(body)
    if is_paid(obj.status.get("phase")):
        return
    problem = await runtime.invoices.deactivate_link(obj, None)
    if problem and retry < 4:
        raise kopf.TemporaryError(problem, delay=backoff(5, retry))
    if problem:
        kopf.warn(body, reason="PaymentLinkNotDeactivated",
                  message=f"{problem}: deactivate it in the Stripe Dashboard.")


def register(registry: kopf.OperatorRegistry, config: OperatorSettings) -> None:
    """Register every handler on ``registry`` with intervals taken from ``config``."""
    on, backoff_ = kopf.on, config.retry_delay
    on.startup(registry=registry, id="configure")(functools.partial(configure, config=config))
    on.login(registry=registry, id="login")(login)
    on.cleanup(registry=registry, id="close")(close)

    kopf.index(*INTEGRATIONS, registry=registry, id="integrations_by_secret")(integrations_by_secret)
    for on_change in (on.update, on.create, on.resume):  # the order the stacked decorators registered them in
        on_change(*INTEGRATIONS, registry=registry, id="integration", backoff=backoff_)(integration_changed)
    kopf.timer(*INTEGRATIONS, registry=registry, id="integration_resync", interval=config.resync_interval,
               initial_delay=config.resync_interval, idle=min(60.0, config.resync_interval))(integration_resync)
    on.delete(*INTEGRATIONS, registry=registry, id="integration_deleted", retries=5, backoff=5)(integration_deleted)
    on.event(*INTEGRATIONS, registry=registry, id="integration_event")(integration_event)
    on.event(*SECRETS, registry=registry, id="secret_changed")(secret_changed)

    for on_change in (on.update, on.create, on.resume):  # the order the stacked decorators registered them in
        on_change(*INVOICES, registry=registry, id="invoice", backoff=backoff_)(invoice_changed)
    on.event(*INVOICES, registry=registry, id="invoice_event")(invoice_event)
    kopf.daemon(*INTEGRATIONS, registry=registry, id="invoice_reconciliation",
                cancellation_timeout=5.0)(invoice_reconciliation)
    on.delete(*INVOICES, registry=registry, id="invoice_deleted", retries=5, backoff=5)(invoice_deleted)
