"""Due dates and reminders on the operator's schedule: no kopf timer per invoice (that would make kopf keep every
invoice's body), but a wall-clock time (and a backoff) per invoice in ``ReconcileSchedule``, kept from the
invoices' watch events (``dunning_wake``) and run by the integration's reconciliation daemon (``run_dunning``),
which also keeps the integration's reminder policy current from its live body (``refresh_policy``).

The times are wall clock (``Runtime.clock``), compared on each pass of the daemon (at least once a second), so
a clock that jumps (a test's, or a corrected one) is followed at once. Dunning never asks Stripe anything.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fluxrate.models import integration_ref_name
from fluxrate.operator.events import post_events
from fluxrate.operator.invoices.dunning import Policy, policy_of, wake_at
from fluxrate.operator.invoices.reminding import Reminding

if TYPE_CHECKING:
    from fluxrate.operator.runtime import Runtime

ERROR_DELAY = 60.0  # at most, before a dunning run that raised runs again

logger = logging.getLogger(__name__)


def dunning_wake(runtime: Runtime, body: Mapping[str, Any]) -> float | None:
    """When the invoice's dunning must next run (wall clock, epoch seconds), for ``ReconcileSchedule.update``."""
    policy = runtime.schedule.policy(body["metadata"]["namespace"], integration_ref_name(body.get("spec")))
    return wake_at(body, policy, runtime.clock())


def policy_source(integration: Mapping[str, Any]) -> tuple[Any, Any]:
    spec = integration.get("spec") or {}
    return spec.get("reminders"), spec.get("active", True)


class PolicyWatch:
    """The integration's policy as its daemon last published it; ``refresh`` publishes a changed one (and
    replans the integration's invoices), so an edited ``spec.reminders`` takes effect within one pass."""

    def __init__(self, runtime: Runtime, namespace: str, name: str) -> None:
        self.runtime, self.namespace, self.name = runtime, namespace, name
        self.source: tuple[Any, Any] | None = None
        self.policy: Policy | None = None

    def refresh(self, integration: Mapping[str, Any]) -> Policy:
        source = policy_source(integration)
        if self.policy is None or source != self.source:
            self.source, self.policy = source, policy_of(integration.get("spec"))
            now, policy = self.runtime.clock(), self.policy
            self.runtime.schedule.set_policy(self.namespace, self.name, policy,
                                             lambda body: wake_at(body, policy, now))
        return self.policy

    def forget(self) -> None:
        self.runtime.schedule.set_policy(self.namespace, self.name, None, lambda body: None)


async def run_dunning(runtime: Runtime, namespace: str, names: list[str], policy: Policy,
                      slots: asyncio.Semaphore) -> None:
    await asyncio.gather(*(remind(runtime, namespace, name, policy, slots) for name in names))


async def remind(runtime: Runtime, namespace: str, name: str, policy: Policy, slots: asyncio.Semaphore) -> None:
    """One invoice's dunning run; reschedules it (the next moment, or a backoff after an SMTP failure)."""
    loop = asyncio.get_running_loop()
    reminding = Reminding(runtime.kube, runtime.clients, runtime.config)
    async with slots:
        now = runtime.clock()
        try:
            async with runtime.lock("invoice", namespace, name):
                done = await reminding.remind(namespace, name, policy, now)
        except Exception:
            delay = min(ERROR_DELAY, runtime.config.retry_delay * 6)
            logger.exception("[%s/%s] Reminders failed; retrying in %s s.", namespace, name, delay)
            runtime.schedule.reschedule_dunning(namespace, name, now.timestamp(), loop.time() + delay)
            return
    if done is None:
        runtime.schedule.reschedule_dunning(namespace, name, None)
        return
    post_events(done.body, done.events)
    hold = loop.time() + done.retry_after if done.retry_after is not None else 0.0
    runtime.schedule.reschedule_dunning(namespace, name, done.next_at.timestamp() if done.next_at else None, hold)
