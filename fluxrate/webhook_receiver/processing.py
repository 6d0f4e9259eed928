"""One webhook delivery, from raw body to answer: verify, match, apply, and record what happened.

``DeliveryProcessor.handle`` never raises; its ``Answer`` says the HTTP status. A 2xx is only answered after the
invoice status write returned (durable); anything that may have left the work undone answers 5xx so Stripe retries.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from kubernetes_asyncio.client.exceptions import ApiException

from fluxrate import after_payment, api_versions
from fluxrate import conditions as cond
from fluxrate.decision import Decision
from fluxrate.invoice_status import ConflictPersisted, InvoiceGone
from fluxrate.kube import Kube, ObjectRef
from fluxrate.payments import HANDLED_TYPES, apply_report, report_from_event
from fluxrate.webhook_receiver.dedupe import RecentEvents
from fluxrate.webhook_receiver.deliveries import DeliveryRecord, DeliveryRecorder
from fluxrate.webhook_receiver.events import EventPoster
from fluxrate.webhook_receiver.logs import log_delivery
from fluxrate.webhook_receiver.metrics import ReceiverMetrics
from fluxrate.webhook_receiver.secrets_cache import TRANSIENT_ERRORS, IntegrationCache, IntegrationInfo, KubeUnavailable
from fluxrate.webhook_receiver.settings import ReceiverSettings
from fluxrate.webhook_receiver.verification import SignatureRejected, verify

log = logging.getLogger(__name__)
OFFLOAD_BYTES = 256 * 1024  # bodies (times secrets) above this are verified and parsed in a worker thread
T = TypeVar("T")


async def off_loop_if_large(size: int, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``, in a worker thread when ``size`` is above OFFLOAD_BYTES (it would hold the loop)."""
    call = functools.partial(fn, *args, **kwargs)
    return await asyncio.to_thread(call) if size > OFFLOAD_BYTES else call()


@dataclass(frozen=True)
class Answer:
    status: int
    outcome: str
    reason: str | None = None
    event_id: str | None = None
    event_type: str | None = None
    invoice: str | None = None
    api_version: str | None = None  # the Stripe API version the event was rendered in

    def body(self) -> dict[str, Any]:
        body = {"outcome": self.outcome, "eventId": self.event_id, "invoice": self.invoice, "reason": self.reason}
        return {k: v for k, v in body.items() if v is not None}


@dataclass(frozen=True)
class Delivery:
    namespace: str
    integration: str
    body: bytes
    signature: str | None
    received: float  # monotonic clock when the request arrived


def parse_event(body: bytes) -> Mapping[str, Any] | None:
    """The Stripe event, or None when the body is not a JSON object with an id and a type."""
    try:
        event = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nesting deeper than Python's limit
        return None
    if not isinstance(event, dict) or not isinstance(event.get("id"), str) or not isinstance(event.get("type"), str):
        return None
    return event


def livemode_problem(event: Mapping[str, Any], info: IntegrationInfo) -> str | None:
    live = event.get("livemode")
    if info.mode not in ("live", "test") or not isinstance(live, bool) or live == (info.mode == "live"):
        return None
    return (f"a {'live' if live else 'test'}-mode event reached a {info.mode}-mode integration: "
            f"point the {'live' if live else 'test'}-mode Stripe endpoint at the integration of that mode")


class DeliveryProcessor:
    def __init__(
        self, settings: ReceiverSettings, kube: Kube, cache: IntegrationCache, recorder: DeliveryRecorder,
        events: EventPoster, metrics: ReceiverMetrics, recent: RecentEvents,
        *, wall_clock: Callable[[], float] = time.time, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.kube = kube
        self.cache = cache
        self.recorder = recorder
        self.events = events
        self.metrics = metrics
        self.recent = recent
        self.wall_clock = wall_clock
        self.clock = clock

    async def handle(self, delivery: Delivery) -> Answer:
        received_at = cond.timestamp()
        known = False
        try:
            known, answer = await self._process(delivery)
        except Exception:  # never a stack trace in an answer; Stripe retries a 500
            log.exception("delivery to %s/%s failed unexpectedly", delivery.namespace, delivery.integration)
            answer = Answer(500, "error", "internal error; Stripe will redeliver")
            known = True
        self.finish(delivery, answer, known=known, received_at=received_at)
        return answer

    def finish(self, delivery: Delivery, answer: Answer, *, known: bool = False, received_at: str | None = None,
               size: int | None = None) -> None:
        """Metrics, the integration's status (``known``: it exists or may) and the log line of one delivery."""
        seconds = self.clock() - delivery.received
        self.metrics.observe(answer.outcome, answer.event_type, seconds)
        if known:
            self.recorder.record(delivery.namespace, delivery.integration, DeliveryRecord(
                outcome=answer.outcome, time=received_at or cond.timestamp(), event_id=answer.event_id,
                type=answer.event_type, invoice=answer.invoice, reason=answer.reason, api_version=answer.api_version,
            ))
        log_delivery({
            "namespace": delivery.namespace, "integration": delivery.integration, "eventId": answer.event_id,
            "type": answer.event_type, "outcome": answer.outcome, "status": answer.status, "invoice": answer.invoice,
            "apiVersion": answer.api_version, "reason": answer.reason,
            "bytes": len(delivery.body) if size is None else size,
            "durationMs": round(seconds * 1000, 1),
        })

    async def _process(self, d: Delivery) -> tuple[bool, Answer]:
        """(whether the integration's status should show the delivery, the answer)."""
        if not self.settings.serves(d.namespace):
            return False, Answer(404, "unmatched", "no such integration")
        try:
            info = await self.cache.get(d.namespace, d.integration)
        except KubeUnavailable as exc:
            log.warning("cannot load integration %s/%s: %s", d.namespace, d.integration, exc)
            # recorded: the flush drops it if the integration turns out not to exist
            return True, Answer(503, "error", "the Kubernetes API is unavailable; Stripe will redeliver")
        if info is None:
            return False, Answer(404, "unmatched", "no such integration")

        try:
            info = await self._verify(d, info)
        except SignatureRejected as exc:
            self._signature_event(info, exc)
            return True, Answer(400, "signature_failed", exc.message)

        event = await off_loop_if_large(len(d.body), parse_event, d.body)
        if event is None:
            return True, Answer(400, "ignored", "the body is not a JSON Stripe event")
        version = event.get("api_version") if isinstance(event.get("api_version"), str) else None
        base = {"event_id": event["id"], "event_type": event["type"], "api_version": version}

        problem = livemode_problem(event, info)
        if problem:
            self.events.post(info.ref, "LivemodeMismatch", f"Ignored {event['type']} {event['id']}: {problem}.",
                             "Warning", at_most_every=self.settings.signature_event_interval)
            return True, Answer(200, "ignored", problem, **base)

        if event["type"] in HANDLED_TYPES and version is not None and not api_versions.readable(version):
            # Verified but in a shape fluxrate may misread: never acknowledged, so Stripe keeps it and redelivers
            # (for up to three days in live mode) while the integration's WebhookApiVersion condition names the fix.
            return True, Answer(503, "error", api_versions.unreadable_reason(version), **base)

        seen, invoice_ref = self.recent.get(d.namespace, d.integration, event["id"])
        if seen:
            if invoice_ref is not None:
                self.events.post(invoice_ref, "WebhookDelivery",
                                 f"Stripe event {event['type']} {event['id']}: duplicate (already applied).",
                                 at_most_every=self.settings.signature_event_interval)
            return True, Answer(200, "duplicate", "event already applied",
                                invoice=invoice_ref.name if invoice_ref else None, **base)

        report = report_from_event(event)
        if report is None:  # not a payment: a refund or a dispute (matched through the payment), or ignored
            after = after_payment.report_from_event(event)
            if after is None:
                return True, Answer(200, "ignored", f"fluxrate does not act on {event['type']}", **base)
            return True, await self._apply(d, event, base, after.invoice_id or after.payment_intent, after_payment.
                                           apply_report(self.kube, d.namespace, after, integration=d.integration))
        if not report.invoice_id:
            return True, Answer(200, "unmatched", "no fluxrate invoice_id in the metadata", **base)

        return True, await self._apply(d, event, base, report.invoice_id,
                                       apply_report(self.kube, d.namespace, report, integration=d.integration))

    async def _apply(
        self, d: Delivery, event: Mapping[str, Any], base: dict[str, Any], target: str | None,
        applying: Awaitable[tuple[Decision, dict[str, Any] | None]],
    ) -> Answer:
        """Await ``applying`` (a report applied to its invoice ``target``), answer, and post the Events about it."""
        try:
            decision, invoice = await applying
        except InvoiceGone:
            return Answer(200, "unmatched", f"invoice {target} was deleted", **base)
        except ConflictPersisted:
            return Answer(503, "error", "the invoice kept changing; Stripe will redeliver", **base)
        except ApiException as exc:
            log.warning("writing invoice %s/%s failed: HTTP %s", d.namespace, target, exc.status)
            return Answer(503, "error", f"the Kubernetes API answered {exc.status}; Stripe will redeliver",
                                **base)
        except TRANSIENT_ERRORS as exc:
            log.warning("writing invoice %s/%s failed: %s", d.namespace, target, type(exc).__name__)
            return Answer(503, "error", "the Kubernetes API is unavailable; Stripe will redeliver", **base)

        name = invoice["metadata"]["name"] if invoice else None
        ref = ObjectRef(kind="Invoice", namespace=d.namespace, name=name, uid=invoice["metadata"].get("uid")
                        ) if invoice and name else None
        if decision.outcome in ("applied", "duplicate"):
            self.recent.add(d.namespace, d.integration, event["id"], ref)
        retry = decision.retry_after is not None  # e.g. a refund of a payment not recorded yet: Stripe redelivers
        if ref is not None:
            for type_, reason, message in decision.events:
                self.events.post(ref, reason, message, type_)
            if decision.outcome != "applied" and not decision.events:
                outcome = "waiting" if retry else decision.outcome
                self.events.post(ref, "WebhookDelivery",
                                 f"Stripe event {event['type']} {event['id']}: {outcome} ({decision.reason}).",
                                 at_most_every=self.settings.signature_event_interval)
        if retry:
            return Answer(503, "error", decision.reason, invoice=name, **base)
        return Answer(200, decision.outcome, None if decision.outcome == "applied" else decision.reason,
                            invoice=name, **base)

    async def _check(self, d: Delivery, secrets: tuple[str, ...]) -> None:
        """The one verification call, for small and large bodies alike (hashing is per secret)."""
        await off_loop_if_large(len(d.body) * max(len(secrets), 1), verify, d.body, d.signature, secrets,
                                tolerance=self.settings.signature_tolerance, now=self.wall_clock())

    async def _verify(self, d: Delivery, info: IntegrationInfo) -> IntegrationInfo:
        """The integration as verified (refreshed after a miss, so a rotated secret works at once)."""
        try:
            await self._check(d, info.secrets)
            return info
        except SignatureRejected as exc:
            if exc.problem not in ("mismatch", "no_secret"):
                raise
            fresh = await self.cache.refresh_after_miss(d.namespace, d.integration, since=d.received)
            if fresh is None or fresh.secrets == info.secrets:
                raise
        await self._check(d, fresh.secrets)
        return fresh

    def _signature_event(self, info: IntegrationInfo, exc: SignatureRejected) -> None:
        message = f"Rejected a webhook delivery: {exc.message}"
        if exc.problem == "no_secret" and info.secret_problem:
            message += f" ({info.secret_problem})"
        self.events.post(info.ref, "WebhookSignatureFailed", message, "Warning",
                         at_most_every=self.settings.signature_event_interval)
