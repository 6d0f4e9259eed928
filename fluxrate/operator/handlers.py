"""kopf handler registration: thin wrappers that call the logic modules and apply their outcomes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterable
from typing import Any

import kopf
from kubernetes_asyncio.client.exceptions import ApiException

from fluxrate import API_GROUP, API_VERSION
from fluxrate.kube import Kube
from fluxrate.models import StripeIntegrationSpec
from fluxrate.operator import integrations, invoices
from fluxrate.operator.integrations import IntegrationObject, Outcome
from fluxrate.operator.schedule import KeyedLocks, ReconcileSchedule, needs_reconciliation
from fluxrate.operator.settings import OperatorSettings
from fluxrate.operator.stripe_clients import StripeClients
from fluxrate.operator.waiting import WaitingInvoices, waits_for

PREFIX = f"operator.{API_GROUP}"  # kopf ignores its own prefix in diffs: keep ours out of it
SECRET_TRIGGER_ANNOTATION = f"{API_GROUP}/secret-changed"
INTEGRATION_READY_ANNOTATION = f"{API_GROUP}/integration-ready"
INTEGRATIONS = (API_GROUP, API_VERSION, "stripeintegrations")
INVOICES = (API_GROUP, API_VERSION, "invoices")
SECRETS = ("", "v1", "secrets")
PEERINGS = (("kopf.dev", "clusterkopfpeerings"), ("kopf.dev", "kopfpeerings"))
RECONCILE_CONCURRENCY = 16  # invoices one integration's daemon reconciles at once (Stripe's limiter still rules)
RENEW_ATTEMPTS = 4  # tries of a link renewal within one invoice event (Stripe unavailable), then reconciliation
RECONCILE_ERROR_DELAY = 60.0  # before an invoice whose reconciliation raised is tried again (kopf's timer default)

logger = logging.getLogger(__name__)


def backoff(base: float, retry: int, cap: float = 600.0) -> float:
    return min(base * 2 ** min(retry, 10), cap)


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
        self.lock = KeyedLocks()  # runtime.lock(kind, namespace, name): one holder at a time per object
        self.invoices = invoices.Reconciler(kube, self.clients, config)
        self.waiting = WaitingInvoices()
        self.schedule = ReconcileSchedule()


def post_events(body: Any, events: Iterable[tuple[str, str, str]]) -> None:
    """Post (type, reason, message) Events on the object: integrations.Event or payments.Decision.events."""
    for type_, reason, message in events:
        kopf.event(body, type=type_, reason=reason, message=message)


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
                obj, runtime.kube, runtime.clients, runtime.config.public_base_url, runtime.config.retry_delay,
                endpoint_overlap=runtime.config.endpoint_overlap,
            )
        apply_outcome(body, patch, outcome)
        return outcome

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
        for invoice in waiting:
            with contextlib.suppress(ApiException):
                await runtime.kube.patch_object("invoices", namespace, invoice, poke)

    @kopf.on.resume(*INTEGRATIONS, registry=registry, id="integration", backoff=config.retry_delay)
    @kopf.on.create(*INTEGRATIONS, registry=registry, id="integration", backoff=config.retry_delay)
    @kopf.on.update(*INTEGRATIONS, registry=registry, id="integration", backoff=config.retry_delay)
    async def integration_changed(
        body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, retry: int, **_: Any,
    ) -> None:
        outcome = await reconcile(body, patch, memo)
        if outcome.retry_after is not None:
            raise kopf.TemporaryError(outcome.status["conditions"][0]["message"],
                                      delay=backoff(outcome.retry_after, retry))
        await poke_waiting_invoices(body, memo)

    @kopf.timer(*INTEGRATIONS, registry=registry, id="integration_resync", interval=config.resync_interval,
                initial_delay=config.resync_interval, idle=min(60.0, config.resync_interval))
    async def integration_resync(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
        """Re-verify the key and repair the managed endpoint's drift (edited or deleted in Stripe)."""
        if body["metadata"].get("deletionTimestamp"):
            return
        await reconcile(body, patch, memo)
        await poke_waiting_invoices(body, memo)

    @kopf.on.delete(*INTEGRATIONS, registry=registry, id="integration_deleted", retries=5, backoff=5)
    async def integration_deleted(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        runtime: Runtime = memo.runtime
        obj = integration_object(body)
        async with runtime.lock("integration", obj.namespace, obj.name):
            events = await integrations.disconnect_integration(obj, runtime.clients, runtime.kube)
        post_events(body, events)

    @kopf.on.event(*SECRETS, registry=registry, id="secret_changed")
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

    @kopf.on.resume(*INVOICES, registry=registry, id="invoice", backoff=config.retry_delay)
    @kopf.on.create(*INVOICES, registry=registry, id="invoice", backoff=config.retry_delay)
    @kopf.on.update(*INVOICES, registry=registry, id="invoice", backoff=config.retry_delay)
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

    @kopf.on.event(*INVOICES, registry=registry, id="invoice_event")
    async def invoice_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        """Keeps ``Runtime.waiting`` and ``Runtime.schedule`` current; Paid (by the receiver or by reconciliation):
        deactivate the link at once."""
        runtime: Runtime = memo.runtime
        status = body.get("status") or {}
        meta = body["metadata"]
        runtime.waiting.update(meta["namespace"], meta["name"],
                               None if type == "DELETED" else waits_for(body.get("spec") or {}, status))
        reconciled = type != "DELETED" and not meta.get("deletionTimestamp") and needs_reconciliation(status)
        first_at = asyncio.get_running_loop().time() + invoices.jitter_delay(config.reconcile_interval, meta["name"])
        runtime.schedule.update(meta["namespace"], meta["name"], body if reconciled else None, first_at)
        if type == "DELETED":
            return
        if not meta.get("deletionTimestamp") and invoices.wants_link_work(status):
            await renew_link(runtime, body)
            return
        link_active = any(link.get("active") is True for link in invoices.active_links(status))
        if status.get("phase") != "Paid" or not link_active:
            return
        obj = invoices.InvoiceObject.of(body)
        async with runtime.lock("invoice", obj.namespace, obj.name):
            latest = await runtime.kube.get_object("invoices", obj.namespace, obj.name)
            if latest is None:
                return
            result = await runtime.invoices.deactivate_if_needed(invoices.InvoiceObject.of(latest), None,
                                                                 "the invoice is paid")
        post_events(body, result.events)

    async def renew_link(runtime: Runtime, body: Any, *, ask_stripe: bool = False) -> None:
        """A payment failed (or reconciliation asks): replace the link if Stripe says it is used up. Event handlers
        are not retried by kopf, so a Stripe hiccup is retried here a few times; reconciliation catches the rest,
        and a restarted operator resumes a renewal from ``status.linkRequest`` (its initial listing)."""
        meta = body["metadata"]
        for attempt in range(RENEW_ATTEMPTS):
            async with runtime.lock("invoice", meta["namespace"], meta["name"]):
                latest = await runtime.kube.get_object("invoices", meta["namespace"], meta["name"])
                if latest is None:
                    return
                result = await runtime.invoices.renew_link(invoices.InvoiceObject.of(latest), ask_stripe=ask_stripe)
            post_events(latest, result.events)
            if result.retry_after is None:
                return
            if attempt + 1 < RENEW_ATTEMPTS:
                await asyncio.sleep(backoff(result.retry_after, attempt, cap=30.0))
        logger.warning("[%s/%s] Payment link renewal postponed to the next reconciliation: %s", meta["namespace"],
                       meta["name"], result.retry_message)

    async def reconcile_invoice(runtime: Runtime, body: Any) -> None:
        """Missed webhooks are caught: ask Stripe whether the link was paid; finish deactivations that failed."""
        obj = invoices.InvoiceObject.of(body)
        phase = obj.status.get("phase")
        async with runtime.lock("invoice", obj.namespace, obj.name):
            if phase == "Open":
                decision = await runtime.invoices.find_missed_payment(obj)
                events = decision.events if decision is not None and decision.outcome == "applied" else []
                if events:
                    events = [(t, r, f"{m} Found by reconciliation: the webhook was missed.") for t, r, m in events]
            else:
                events = (await runtime.invoices.deactivate_if_needed(obj, None, "the invoice is paid")).events
        post_events(body, events)
        if phase == "Open" and not events:
            # a link deactivated in the Stripe Dashboard, or a failure whose webhook was missed: renew it
            await renew_link(runtime, body, ask_stripe=True)

    async def reconcile_due_invoice(runtime: Runtime, body: Any, slots: asyncio.Semaphore) -> None:
        meta = body["metadata"]
        loop = asyncio.get_running_loop()
        delay = config.reconcile_interval
        async with slots:
            try:
                await reconcile_invoice(runtime, body)
            except Exception as exc:
                delay = min(RECONCILE_ERROR_DELAY, config.reconcile_interval)
                logger.exception("[%s/%s] Reconciliation failed; retrying in %s s.", meta["namespace"], meta["name"],
                                 delay)
                kopf.exception(body, reason="ReconciliationFailed", message=f"Reconciliation failed: {exc}")
        # like kopf's timers: the interval runs from the end of the previous run
        runtime.schedule.reschedule(meta["namespace"], meta["name"], loop.time() + delay)

    @kopf.daemon(*INTEGRATIONS, registry=registry, id="invoice_reconciliation", cancellation_timeout=5.0)
    async def invoice_reconciliation(namespace: str, name: str, memo: kopf.Memo, stopped: kopf.DaemonStopped,
                                     **_: Any) -> None:
        """Runs the reconciliation of this integration's Open invoices (and Paid ones whose link is still active),
        each every ``reconcile_interval``, the first run spread over the interval (``invoice_event`` files them)."""
        runtime: Runtime = memo.runtime
        loop = asyncio.get_running_loop()
        slots = asyncio.Semaphore(RECONCILE_CONCURRENCY)
        with runtime.schedule.watching(namespace, name) as filed:
            while not stopped:
                due = runtime.schedule.take_due(namespace, name, loop.time())
                if due:
                    await asyncio.gather(*(reconcile_due_invoice(runtime, body, slots) for body in due))
                    continue
                filed.clear()
                wait = min(runtime.schedule.next_at(namespace, name) - loop.time(), 1.0)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(filed.wait(), max(wait, 0.0))

    @kopf.on.delete(*INVOICES, registry=registry, id="invoice_deleted", retries=5, backoff=5)
    async def invoice_deleted(body: kopf.Body, memo: kopf.Memo, retry: int, **_: Any) -> None:
        """Deleting an invoice with an open link: make sure nobody can pay it any more."""
        runtime: Runtime = memo.runtime
        obj = invoices.InvoiceObject.of(body)
        if obj.status.get("phase") == "Paid":
            return
        problem = await runtime.invoices.deactivate_link(obj, None)
        if problem and retry < 4:
            raise kopf.TemporaryError(problem, delay=backoff(5, retry))
        if problem:
            kopf.warn(body, reason="PaymentLinkNotDeactivated",
                      message=f"{problem}: deactivate it in the Stripe Dashboard.")
