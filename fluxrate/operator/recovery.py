"""Missed webhooks recovered through Stripe's Events API: what each integration's reconciliation pass costs Stripe
follows the events that did not arrive, not the invoices that are open.

Once per ``reconcile_interval`` per integration (``schedule.run_reconciliation``), from the cursor kept in the
integration's ``status.eventsRecovery``:

1. ``GET /v1/events?types[]=<the types fluxrate handles>&created[gte]=<cursor>&delivery_success=false``, paged. An
   event Stripe delivered to every endpoint was answered 2xx by the receiver, so it is applied (or was not ours);
   one answered 5xx, still being retried, or given up on is not delivered and is listed. Events created while no
   endpoint delivered them at all are not "undelivered" in Stripe's eyes (never sent): while the integration does
   not show a working endpoint (``delivering``), the pass reads every event of those types since the cursor.
2. ``GET /v1/events?type=payment_link.updated&created[gte]=<cursor>``: a link deactivated in the Dashboard (nothing
   subscribes to that type: every one is read) is renewed, as reconciliation asked Stripe per invoice before.

Each event goes through the receiver's own decision path (``payments`` / ``after_payment``, ``source:
reconciliation``), in the integration's namespace and matched like a webhook; no signature: it came from Stripe's
API with the integration's key. The cursor (Stripe's ``created``, in seconds) moves forward only past events that
were applied or are definitively not ours (``recover``): never past one held (a Kubernetes error, a refund whose
payment is not recorded yet), and never closer than ``OVERLAP_S`` to the pass's start (events created in the same
second, clock skew). Stripe keeps events 30 days: the Open invoices it cannot vouch for (``in_doubt``) keep the
per-invoice Checkout Session check, at most ``CHECKS_PER_INTERVAL`` per integration per interval (``CheckTurns``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import aiohttp
import stripe
from kubernetes_asyncio.client.exceptions import ApiException

from fluxrate import after_payment, api_versions, payments
from fluxrate import conditions as cond
from fluxrate.decision import Event
from fluxrate.invoice_status import ConflictPersisted, InvoiceGone
from fluxrate.operator.events import post_events
from fluxrate.operator.invoices.links import link_history
from fluxrate.operator.stripe_budget import Priority
from fluxrate.operator.stripe_clients import IntegrationClient

if TYPE_CHECKING:
    from fluxrate.operator.runtime import Runtime

RETENTION_S = 30 * 24 * 3600  # Stripe lists events of the last 30 days
OVERLAP_S = 60  # the cursor stays this far behind a pass's start: same-second events, clock skew, indexing lag
PAGE = 100  # Stripe's largest page
RECOVERED_TYPES = tuple(sorted(payments.HANDLED_TYPES))  # payments, refunds and disputes
MAX_TYPES = 20  # ``types`` takes up to 20 event types
assert len(RECOVERED_TYPES) <= MAX_TYPES, "split the listing: Stripe takes at most 20 types at once"
LINK_UPDATED = "payment_link.updated"
CHECKS_PER_INTERVAL = 20  # per-invoice Checkout Session checks per integration per reconcile interval
PENDING_IN_DOUBT_S = 7 * 24 * 3600  # a delayed (bank debit) payment settles within days: pending longer is odd
NOTE = "Recovered through Stripe's Events API: the webhook was not delivered."
TRANSIENT = (ApiException, aiohttp.ClientError, TimeoutError, OSError)
Outcome = Literal["applied", "done", "held"]
Renew = Callable[[Mapping[str, Any]], Awaitable[bool]]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Position:
    """``status.eventsRecovery``: events created at or after ``cursor`` are read next; every event since
    ``covered_since`` was either delivered or read by a pass (before it, Stripe's events were not read)."""

    cursor: int
    covered_since: int
    last_event_id: str | None = None
    last_pass_at: str | None = None
    recovered: int = 0

    @classmethod
    def of(cls, status: Mapping[str, Any] | None, now: float, known: Position | None = None) -> Position:
        """The position in ``status`` (or ``known``, this process's last write, if further on); a first pass reads
        everything Stripe keeps, and a cursor older than that restarts the coverage at Stripe's horizon."""
        saved = (status or {}).get("eventsRecovery") or {}
        edge = int(now) - RETENTION_S
        cursor = saved.get("cursor") if isinstance(saved.get("cursor"), int) else edge
        position = cls(cursor, int(saved.get("coveredSince") or cursor), saved.get("lastEventId"),
                       saved.get("lastPassAt"), int(saved.get("recovered") or 0))
        if known is not None and known.cursor >= position.cursor:
            position = known
        if position.cursor < edge:  # events older than 30 days are gone: what they said cannot be read any more
            position = dataclasses.replace(position, cursor=edge, covered_since=edge)
        return position

    def status(self) -> dict[str, Any]:
        return {"cursor": self.cursor, "coveredSince": self.covered_since, "lastEventId": self.last_event_id,
                "lastPassAt": self.last_pass_at, "recovered": self.recovered}


def delivering(status: Mapping[str, Any]) -> bool:
    """Whether the integration shows an endpoint Stripe sends the events to: the managed one registered, or a
    hand-made one with every type enabled (``MissingEvents`` False). Otherwise events are not "undelivered"."""
    conditions = status.get("conditions")
    if status.get("webhookEndpointId"):
        return cond.is_true(conditions, "WebhookEndpointReady")
    found = cond.get(conditions, "MissingEvents")
    return bool(found) and found.get("status") == "False"


def listings(cursor: int, undelivered_only: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """The two listings of a pass: the handled types (only those not delivered, when an endpoint delivers them),
    and every ``payment_link.updated`` (a link deactivated in the Dashboard)."""
    since = {"created": {"gte": cursor}}
    wanted = {**since, "types": list(RECOVERED_TYPES), **({"delivery_success": False} if undelivered_only else {})}
    return wanted, {**since, "type": LINK_UPDATED}


async def list_events(entry: IntegrationClient, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every event of the listing, oldest first (Stripe pages newest first)."""
    events: list[dict[str, Any]] = []
    while True:
        query = {**params, "limit": PAGE, **({"starting_after": events[-1]["id"]} if events else {})}
        page = await entry.call(lambda c, q=query: c.v1.events.list_async(params=q), priority=Priority.BACKGROUND)
        events.extend(e.to_dict() for e in page.data)
        if not page.has_more or not page.data:
            return list(reversed(events))


async def recover(runtime: Runtime, namespace: str, integration: str, event: Mapping[str, Any]) -> Outcome:
    """One event through the receiver's decision path: applied, done (a duplicate, or not ours), or held (to be
    read again: the invoice could not be written, or the event must wait for another)."""
    version = event.get("api_version")
    if isinstance(version, str) and not api_versions.readable(version):
        logger.warning("[%s/%s] Event %s is in API version %s, which fluxrate may misread: %s", namespace,
                       integration, event.get("id"), version, api_versions.unreadable_reason(version))
        return "held"
    report = payments.report_from_event(event)
    try:
        if report is not None:
            if not report.invoice_id:
                return "done"
            report = dataclasses.replace(report, source="reconciliation")
            decision, invoice = await payments.apply_report(runtime.kube, namespace, report, integration=integration)
        else:
            after = after_payment.report_from_event(event)
            if after is None:
                return "done"
            decision, invoice = await after_payment.apply_report(runtime.kube, namespace, after,
                                                                 integration=integration)
    except InvoiceGone:
        return "done"
    except (ConflictPersisted, *TRANSIENT) as exc:
        logger.warning("[%s/%s] Recovering event %s: %s; read again next pass.", namespace, integration,
                       event.get("id"), type(exc).__name__)
        return "held"
    if decision.retry_after is not None:
        return "held"
    if invoice is not None and decision.events:
        post_events(invoice, [Event(t, r, f"{m} {NOTE}") for t, r, m in decision.events])
    return "applied" if decision.outcome == "applied" else "done"


async def renew_deactivated(runtime: Runtime, namespace: str, events: list[dict[str, Any]], renew: Renew) -> list[int]:
    """Renew the Open invoices whose current link an event says was deactivated; the ``created`` of those whose
    renewal did not finish (the cursor holds there)."""
    held = []
    for event in events:
        link = (event.get("data") or {}).get("object") or {}
        meta = link.get("metadata") or {}
        if link.get("active") is not False or meta.get("namespace") not in (None, namespace):
            continue
        body = runtime.schedule.body(namespace, str(meta.get("invoice_id") or ""))
        status = (body or {}).get("status") or {}
        if body is None or status.get("phase") != "Open" or (status.get("paymentLink") or {}).get("id") != link["id"]:
            continue
        if not await renew(body):
            held.append(int(event.get("created") or 0))
    return held


async def recovery_pass(runtime: Runtime, namespace: str, name: str, status: Mapping[str, Any],
                        known: Position | None, renew: Renew, wall: Callable[[], float] = time.time
                        ) -> Position | None:
    """One pass; the new position (written to the integration's status), or None when Stripe could not be asked
    (the integration not connected, Stripe unavailable: the next pass starts from the same cursor)."""
    entry = runtime.clients.get(namespace, name)
    if entry is None or not (entry.ready and entry.active):
        return None
    started = wall()
    position = Position.of(status, started, known)
    wanted, links = listings(position.cursor, delivering(status))
    try:
        events = await list_events(entry, wanted)
        updates = await list_events(entry, links)
    except stripe.StripeError as exc:
        logger.warning("[%s/%s] Listing Stripe's events failed (%s); trying again next pass.", namespace, name,
                       type(exc).__name__)
        return None
    held, recovered = [], 0
    for event in events:
        outcome = await recover(runtime, namespace, name, event)
        recovered += outcome == "applied"
        if outcome == "held":
            held.append(int(event.get("created") or 0))
    held += await renew_deactivated(runtime, namespace, updates, renew)
    if recovered:
        logger.info("[%s/%s] Recovered %s event(s) whose webhook was not delivered.", namespace, name, recovered)
    moved = Position(max(position.cursor, min([int(started) - OVERLAP_S, *held])), position.covered_since,
                     events[-1]["id"] if events else position.last_event_id,
                     cond.timestamp(dt.datetime.fromtimestamp(started, dt.UTC)), position.recovered + recovered)
    await runtime.kube.patch_status("stripeintegrations", namespace, name, {"eventsRecovery": moved.status()})
    return moved


# --- the Open invoices the Events API cannot vouch for -------------------------------------------------------


def _epoch(value: Any) -> float | None:
    try:
        return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp() if value else None
    except ValueError:
        return None


def in_doubt(body: Mapping[str, Any], covered_since: int, now: float) -> str | None:
    """Why an Open invoice needs Stripe asked about its links (None: the Events API answers for it): its first link
    is older than the 30 days Stripe keeps events, or older than what recovery has read (a first pass, or an
    operator stopped for longer than 30 days), or a delayed payment has been pending for more than 7 days."""
    status = body.get("status") or {}
    created = [_epoch(link.get("createdAt")) for link in link_history(status)]
    first = min((c for c in created if c is not None),
                default=_epoch((body.get("metadata") or {}).get("creationTimestamp")) or now)
    if first < now - RETENTION_S:
        return "its first payment link is older than the 30 days Stripe keeps events"
    if first < covered_since:
        return "its first payment link is older than the events recovery has read"
    since = _epoch((status.get("pendingPayment") or {}).get("since"))
    if since is not None and since < now - PENDING_IN_DOUBT_S:
        return "its delayed payment has been pending for more than 7 days"
    return None


class CheckTurns:
    """Each invoice in doubt gets its own turn, ``interval / CHECKS_PER_INTERVAL`` apart: at most that many
    Checkout Session checks per interval per integration, and every invoice in doubt checked in turn."""

    def __init__(self, interval: float, per_interval: int = CHECKS_PER_INTERVAL) -> None:
        self.spacing = interval / max(per_interval, 1)
        self.next_free = 0.0
        self.turns: dict[str, float] = {}  # invoice -> its reserved turn (loop time)

    def take(self, name: str, now: float) -> float | None:
        """None: check it now; else the loop time of its turn (it is due again then)."""
        turn = self.turns.pop(name, None)
        if turn is None:
            turn = max(now, self.next_free)
            self.next_free = turn + self.spacing
        if turn <= now:
            return None
        self.turns[name] = turn
        return turn

    def forget(self, name: str) -> None:
        self.turns.pop(name, None)
