"""Invoices due for reconciliation (missed webhooks, unfinished deactivations), kept from the invoices' watch events
and run by one daemon per StripeIntegration.

A kopf timer on invoices did this before, but any timer or daemon on a resource makes kopf keep the last body of
every object of that resource for the life of the process, even of those whose ``when`` filter never matches:
with 10,000 invoices, mostly Paid, that was about 60 MiB. Only the invoices that need it are kept here.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import kopf

from fluxrate.decision import Event, backoff
from fluxrate.invoice_status import is_paid
from fluxrate.models import integration_ref_name
from fluxrate.operator import invoices
from fluxrate.operator.dunning_schedule import PolicyWatch, run_dunning
from fluxrate.operator.events import post_events
from fluxrate.operator.invoices.links import FIRST_PASS_FLOOR
from fluxrate.operator.recovery import CheckTurns, Position, in_doubt, recovery_pass

if TYPE_CHECKING:
    from fluxrate.operator.runtime import Runtime

Key = tuple[str, str]  # (namespace, integration name)
RECONCILE_CONCURRENCY = 16  # invoices one integration's daemon reconciles at once (Stripe's limiter still rules)
RENEW_ATTEMPTS = 4  # tries of a link renewal within one invoice event (Stripe unavailable), then reconciliation
INF = float("inf")
RECONCILE_ERROR_DELAY = 60.0  # before an invoice whose reconciliation raised is tried again (kopf's timer default)
RETENTION_FALLBACK_S = 30 * 24 * 3600  # before a daemon's first pass: Stripe's whole horizon counts as read

logger = logging.getLogger(__name__)


def needs_reconciliation(status: Mapping[str, Any], now: dt.datetime | None = None) -> bool:
    """Open (a webhook may be missed, a link deactivated in Stripe), or Paid with a link (the current one or a
    replaced one) still active (its deactivation failed), or Paid recently and owed its receipt (``receipt_state``:
    a payment recorded long ago is not, so resuming old Paid invoices schedules none of them)."""
    links = [*(status.get("paymentLinks") or []), status.get("paymentLink") or {}]
    active = any(isinstance(link, Mapping) and link.get("active") is True for link in links)
    return (status.get("phase") == "Open" or (is_paid(status.get("phase")) and active)
            or invoices.receipt_state(status, now) is not None)


def integration_of(body: Mapping[str, Any]) -> str:
    return integration_ref_name(body.get("spec"))


@dataclass(slots=True)
class Due:
    at: float  # loop time of the next reconciliation (inf: none, or running)
    body: Mapping[str, Any] | None  # the newest version seen, while it needs reconciliation
    dunning_at: float = INF  # wall clock (epoch seconds) of the next dunning run (dunning_schedule)
    hold: float = 0.0  # loop time before which that run waits (an SMTP backoff); inf while it runs


class ReconcileSchedule:
    """When each invoice that needs reconciliation, or dunning (due dates and reminders), is next due, filed under
    the integration it references: at most a body (kept for reconciliation anyway) and three floats each."""

    def __init__(self) -> None:
        self._by_integration: dict[Key, dict[str, Due]] = {}
        self._keys: dict[Key, Key] = {}  # (namespace, invoice) -> the key it is filed under
        self._changed: dict[Key, asyncio.Event] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._policies: dict[Key, Any] = {}  # (namespace, integration) -> its dunning Policy, from its daemon

    def update(self, namespace: str, name: str, body: Mapping[str, Any] | None, first_at: float, *,
               reconcile: bool = True, dunning_at: float | None = None) -> None:
        """Keep ``body`` as the invoice's newest version, due at ``first_at`` if it was not scheduled yet (when it
        needs reconciliation, ``reconcile``), its dunning due at ``dunning_at`` (wall clock, None: not); or drop the
        invoice (``body`` None: deleted or being deleted; or neither needed)."""
        filed = body is not None and (reconcile or dunning_at is not None)
        key = (namespace, integration_of(body)) if filed and body is not None else None
        previous = self._keys.get((namespace, name))
        moved = self._remove(namespace, name, previous) if previous is not None and previous != key else None
        if body is None or key is None:
            return
        entries = self._by_integration.setdefault(key, {})
        current = entries.get(name) or moved
        at = INF if not reconcile else current.at if current is not None and current.body is not None else first_at
        wall = INF if dunning_at is None else dunning_at
        entries[name] = Due(at, body if reconcile else None, wall, current.hold if current is not None else 0.0)
        self._keys[(namespace, name)] = key
        if current is None or at < current.at or wall < current.dunning_at:
            self._wake(key)

    def drop(self, namespace: str, name: str) -> None:
        previous = self._keys.get((namespace, name))
        if previous is not None:
            self._remove(namespace, name, previous)

    def _remove(self, namespace: str, name: str, key: Key) -> Due | None:
        del self._keys[(namespace, name)]
        entries = self._by_integration.get(key, {})
        due = entries.pop(name, None)
        if not entries:
            self._by_integration.pop(key, None)
        return due

    def _wake(self, key: Key) -> None:
        event = self._changed.get(key)
        if event is not None:
            event.set()

    def wake_all(self) -> None:
        """Wake every daemon to look again (the wall clock moved); safe to call from any thread."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # closing meanwhile
                loop.call_soon_threadsafe(lambda: [event.set() for event in list(self._changed.values())])

    def body(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """The invoice's newest body, while it needs reconciliation (Open, or Paid with an active link)."""
        due = self._due(namespace, name)
        return due.body if due is not None else None

    def names(self, namespace: str, integration: str) -> frozenset[str]:
        return frozenset(self._by_integration.get((namespace, integration), ()))

    def take_due(self, namespace: str, integration: str, now: float) -> list[Mapping[str, Any]]:
        """The bodies of the invoices due at ``now``; they are not due again until ``reschedule``."""
        entries = self._by_integration.get((namespace, integration), {})
        taken = []
        for due in entries.values():
            if due.at <= now and due.body is not None:
                due.at = INF
                taken.append(due.body)
        return taken

    def reschedule(self, namespace: str, name: str, at: float) -> None:
        due = self._due(namespace, name)
        if due is not None and due.body is not None:
            due.at = at

    def _due(self, namespace: str, name: str) -> Due | None:
        key = self._keys.get((namespace, name))
        return self._by_integration[key].get(name) if key is not None else None

    def take_dunning(self, namespace: str, integration: str, wall: float, now: float) -> list[str]:
        """The invoices whose dunning is due at ``wall`` (and not held past loop time ``now``); they are not due
        again until ``reschedule_dunning``."""
        taken = []
        for name, due in self._by_integration.get((namespace, integration), {}).items():
            if due.dunning_at <= wall and due.hold <= now:
                due.hold = INF
                taken.append(name)
        return taken

    def reschedule_dunning(self, namespace: str, name: str, wall: float | None, hold: float = 0.0) -> None:
        """The next dunning run at ``wall`` (None: none until a change), not before loop time ``hold``."""
        due = self._due(namespace, name)
        if due is None:
            return
        due.dunning_at, due.hold = INF if wall is None else wall, hold
        if due.body is None and wall is None:
            self.drop(namespace, name)

    def policy(self, namespace: str, integration: str) -> Any:
        return self._policies.get((namespace, integration))

    def set_policy(self, namespace: str, integration: str, policy: Any,
                   replan: Callable[[Mapping[str, Any]], float | None]) -> None:
        """The integration's dunning policy (None: forget it) changed: replan the invoices whose body is kept with
        ``replan`` (the others, not Open, do not depend on it)."""
        if policy is None:
            self._policies.pop((namespace, integration), None)
            return
        self._policies[(namespace, integration)] = policy
        for due in self._by_integration.get((namespace, integration), {}).values():
            if due.body is not None:
                wall = replan(due.body)
                due.dunning_at = INF if wall is None else wall

    def next_at(self, namespace: str, integration: str) -> float:
        return min((d.at for d in self._by_integration.get((namespace, integration), {}).values()),
                   default=INF)

    def next_wait(self, namespace: str, integration: str, now: float, wall: float) -> float:
        """Seconds until anything of the integration is due (loop time ``now``, wall clock ``wall``)."""
        wait = INF
        for due in self._by_integration.get((namespace, integration), {}).values():
            wait = min(wait, due.at - now, max(due.dunning_at - wall, due.hold - now))
        return wait

    @contextlib.contextmanager
    def watching(self, namespace: str, integration: str) -> Any:
        """An event set whenever an invoice is newly filed under the integration (for the daemon's sleeps)."""
        self._loop = asyncio.get_running_loop()
        event = self._changed[(namespace, integration)] = asyncio.Event()
        try:
            yield event
        finally:
            if self._changed.get((namespace, integration)) is event:
                del self._changed[(namespace, integration)]


class KeyedLocks:
    """One asyncio.Lock per key while anyone holds or waits for it; forgotten after (not one per invoice ever)."""

    def __init__(self) -> None:
        self._locks: dict[tuple[str, ...], tuple[asyncio.Lock, list[int]]] = {}

    def __len__(self) -> int:
        return len(self._locks)

    @contextlib.asynccontextmanager
    async def __call__(self, *key: str) -> AsyncIterator[None]:
        lock, users = self._locks.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._locks[key]


# --- the reconciliation daemon of an integration --------------------------------------------------------------


async def run_reconciliation(runtime: Runtime, namespace: str, name: str, stopped: kopf.DaemonStopped,
                             integration: Mapping[str, Any] | None = None) -> None:
    """Runs the reconciliation of this integration's Open invoices (and Paid ones whose link is still active),
    each every ``reconcile_interval``, the first run spread over the interval (``invoice_event`` files them); and
    their dunning (due dates and reminders) when it is due, with the policy of ``integration`` (kopf's live body
    of the integration: an edit of it is seen on the next pass)."""
    loop = asyncio.get_running_loop()
    slots = asyncio.Semaphore(RECONCILE_CONCURRENCY)
    policies = PolicyWatch(runtime, namespace, name)
    recovery = Recovery(runtime, namespace, name, loop.time())
    with runtime.schedule.watching(namespace, name) as filed:
        try:
            while not stopped:
                policy = policies.refresh(integration or {})
                await recovery.run_if_due(loop.time(), (integration or {}).get("status") or {})
                due = runtime.schedule.take_due(namespace, name, loop.time())
                dunning = runtime.schedule.take_dunning(namespace, name, runtime.clock().timestamp(), loop.time())
                if due or dunning:
                    await asyncio.gather(*(reconcile_due_invoice(runtime, body, slots, recovery) for body in due),
                                         run_dunning(runtime, namespace, dunning, policy, slots))
                    continue
                filed.clear()
                wait = min(runtime.schedule.next_wait(namespace, name, loop.time(), runtime.clock().timestamp()),
                           recovery.at - loop.time())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(filed.wait(), max(min(wait, 1.0), 0.0))
        finally:
            policies.forget()


class Recovery:
    """The integration's events recovery (``recovery``): a pass per interval, its position, and the turns of the
    Open invoices it cannot vouch for."""

    def __init__(self, runtime: Runtime, namespace: str, name: str, now: float) -> None:
        self.runtime, self.namespace, self.name = runtime, namespace, name
        interval = runtime.config.reconcile_interval
        # loop time of the next pass: the first a tenth of the interval after the daemon starts (soon after a restart,
        # and, as for invoices' first passes, never while the first deliveries of new events are still under way)
        self.at = now + interval * FIRST_PASS_FLOOR
        self.position: Position | None = None  # this process's last write (the live body may lag it)
        self.covered_since = int(time.time()) - RETENTION_FALLBACK_S
        self.turns = CheckTurns(interval)

    async def run_if_due(self, now: float, status: Mapping[str, Any]) -> None:
        if now < self.at:
            return
        interval = self.runtime.config.reconcile_interval
        renew = functools.partial(renew_link, self.runtime, ask_stripe=True)
        try:
            moved = await recovery_pass(self.runtime, self.namespace, self.name, status, self.position, renew)
        except Exception:
            logger.exception("[%s/%s] Events recovery failed; retrying.", self.namespace, self.name)
            moved = None
        loop_now = asyncio.get_running_loop().time()
        self.at = loop_now + (interval if moved is not None else min(RECONCILE_ERROR_DELAY, interval))
        self.position = moved or self.position
        self.covered_since = (self.position or Position.of(status, time.time())).covered_since

    def doubt(self, body: Mapping[str, Any]) -> str | None:
        return in_doubt(body, self.covered_since, time.time())


async def renew_link(runtime: Runtime, body: Any, *, ask_stripe: bool = False) -> bool:
    """A payment failed (or reconciliation asks): replace the link if Stripe says it is used up. Event handlers
    are not retried by kopf, so a Stripe hiccup is retried here a few times; reconciliation catches the rest,
    and a restarted operator resumes a renewal from ``status.linkRequest`` (its initial listing). False when it
    was postponed."""
    meta = body["metadata"]
    for attempt in range(RENEW_ATTEMPTS):
        async with runtime.lock("invoice", meta["namespace"], meta["name"]):
            latest = await runtime.kube.get_object("invoices", meta["namespace"], meta["name"])
            if latest is None:
                return True
            result = await runtime.invoices.renew_link(invoices.InvoiceObject.of(latest), ask_stripe=ask_stripe)
        post_events(latest, result.events)
        if result.retry_after is None:
            return True
        if attempt + 1 < RENEW_ATTEMPTS:
            await asyncio.sleep(backoff(result.retry_after, attempt, cap=30.0))
    logger.warning("[%s/%s] Payment link renewal postponed to the next reconciliation: %s", meta["namespace"],
                   meta["name"], result.retry_message)
    return False


async def reconcile_invoice(runtime: Runtime, body: Any, doubt: str | None = "asked") -> None:
    """An Open invoice: Stripe is asked whether its links were paid (a missed webhook) or can still take a payment
    (deactivated in the Dashboard, a failure whose webhook was missed) only when the Events API cannot answer for
    it (``doubt``: ``recovery.in_doubt``; None: recovery answers), and link work left unfinished is finished. Paid:
    deactivations that failed are finished, and a receipt owed is sent."""
    obj = invoices.InvoiceObject.of(body)
    phase = obj.status.get("phase")
    if phase == "Open" and doubt is None:
        if invoices.wants_link_work(obj.status):  # a renewal cut short, a failure not checked, a replaced link
            await renew_link(runtime, body)
        return
    async with runtime.lock("invoice", obj.namespace, obj.name):
        if phase == "Open":
            decision = await runtime.invoices.find_missed_payment(obj)
            events = decision.events if decision is not None and decision.outcome == "applied" else []
            if events:
                events = [Event(t, r, f"{m} Found by reconciliation ({doubt}): the webhook was missed.")
                          for t, r, m in events]
        else:
            events = (await runtime.invoices.deactivate_if_needed(obj, None, "the invoice is paid")).events
    post_events(body, events)
    if invoices.receipt_state(obj.status) is not None:  # its receipt failed (or was never tried): try again
        await invoices.deliver_receipt(runtime, body)
    if phase == "Open" and not events:
        # a link deactivated in the Stripe Dashboard, or a failure whose webhook was missed: renew it
        await renew_link(runtime, body, ask_stripe=True)


async def reconcile_due_invoice(runtime: Runtime, body: Any, slots: asyncio.Semaphore,
                                recovery: Recovery | None = None) -> None:
    meta = body["metadata"]
    loop = asyncio.get_running_loop()
    delay = runtime.config.reconcile_interval
    doubt = recovery.doubt(body) if recovery is not None and (body.get("status") or {}).get("phase") == "Open" \
        else "asked"
    if recovery is not None and doubt is not None and doubt != "asked":
        turn = recovery.turns.take(meta["name"], loop.time())
        if turn is not None:  # not its turn yet: at most CHECKS_PER_INTERVAL checks per interval
            doubt, delay = None, min(delay, turn - loop.time())
    async with slots:
        try:
            await reconcile_invoice(runtime, body, doubt)
        except Exception as exc:
            delay = min(RECONCILE_ERROR_DELAY, runtime.config.reconcile_interval)
            logger.exception("[%s/%s] Reconciliation failed; retrying in %s s.", meta["namespace"], meta["name"],
                             delay)
            kopf.exception(body, reason="ReconciliationFailed", message=f"Reconciliation failed: {exc}")
    # like kopf's timers: the interval runs from the end of the previous run
    runtime.schedule.reschedule(meta["namespace"], meta["name"], loop.time() + delay)
