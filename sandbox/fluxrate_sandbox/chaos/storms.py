"""Scenarios 1, 2 and 5: customers pay, Stripe (the stand-in) delivers every success event three times,
concurrently and shuffled, while the Kubernetes API fails or the receiver is killed mid-request."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field

from fluxrate.operator.invoices.links import FIRST_PASS_FLOOR
from fluxrate_sandbox.chaos.outcome import Outcome, Size
from fluxrate_sandbox.chaos.stack import Obj, Stack, Tenant
from fluxrate_sandbox.stripe_standin import PaymentResult

DUPLICATES = 3
# what the stand-in's HTTP client sees when the receiver dies while handling its request
CUT_MID_REQUEST = frozenset({"ServerDisconnectedError", "ClientOSError", "ClientPayloadError"})


@dataclass
class Storm:
    """Pays every invoice's link (in shuffled order, ``spread_s`` seconds in all); each event sent 3 times."""

    stack: Stack
    invoices: list[Obj]
    spread_s: float = 0.0
    rng: random.Random = field(default_factory=random.Random)
    results: list[PaymentResult] = field(default_factory=list)
    log_start: int = 0

    async def run(self) -> None:
        links = [i["status"]["paymentLink"]["id"] for i in self.invoices]
        self.rng.shuffle(links)
        self.log_start = len(self.stack.sandbox.stripe.delivery_log)
        gap = self.spread_s / max(1, len(links))
        for link in links:
            # reorder: payment_intent.succeeded before checkout.session.completed for about half of them
            self.results.append(await self.stack.sandbox.stripe.pay(
                link, duplicate=DUPLICATES, reorder=self.rng.random() < 0.5))
            if gap:
                await asyncio.sleep(gap)

    async def delivered(self) -> None:
        await asyncio.gather(*(r.delivered for r in self.results))


def payment_figures(stack: Stack, tenant: Tenant, invoices: list[Obj], storm: Storm, outcome: Outcome,
                    *, events_may_be_lost: bool = False) -> Counter[str]:
    """Figures every storm reports; returns the stand-in's answers by class. A receiver SIGKILLed between the
    status write and its Kubernetes Event loses that Event (``events_may_be_lost``); the payment is stored."""
    names = [i["metadata"]["name"] for i in invoices]
    paid = stack.paid(tenant.namespace, names)
    records = [i for i in paid if (i["status"].get("payment") or {}).get("providerPaymentId")]
    sources = Counter((i["status"].get("payment") or {}).get("source") for i in paid)
    paid_events = stack.events(tenant.namespace, "Paid")
    second = stack.events(tenant.namespace, "SecondPayment")
    log = stack.sandbox.stripe.delivery_log[storm.log_start:]
    classes = Counter(
        "no answer" if a.status is None else f"{a.status // 100}xx" for a in log)
    counts = ((stack.integration(tenant.namespace, tenant.integration) or {}).get("status", {})
              .get("deliveries", {}).get("counts", {}))
    outcome.figures.update({
        "invoices": len(invoices), "paid": len(paid), "payment records": len(records),
        "Paid events": len(paid_events), "SecondPayment events": len(second),
        "paid via webhook": sources.get("webhook", 0),
        "events sent": sum(len(r.events) for r in storm.results) * DUPLICATES,
        "delivery attempts": len(log),
        **{f"answers {k}": v for k, v in sorted(classes.items())},
        **{f"receiver outcome {k}": v for k, v in sorted(counts.items())},
    })
    outcome.check(f"exactly {len(invoices)} Paid", len(paid) == len(invoices))
    outcome.check(f"exactly {len(invoices)} payment records", len(records) == len(invoices))
    per_invoice = Counter(e["involvedObject"]["name"] for e in paid_events)
    at_most_one = all(n == 1 for n in per_invoice.values())
    outcome.figures["Paid events lost (best effort while the API is down or the receiver killed)"] = (
        len(invoices) - len(per_invoice))
    all_there = events_may_be_lost or len(per_invoice) == len(invoices)
    outcome.check("one Paid transition per invoice (never two Paid Events), no second payment",
                  at_most_one and all_there and not second)
    # No invoice's first reconciliation runs before a tenth of the interval after it opened (jitter_delay), nor an
    # integration's first events recovery pass before a tenth of it after the operator started (schedule.Recovery),
    # so within that time every payment can only have come by webhook; the scenario checks it stayed within it.
    quiet_s = FIRST_PASS_FLOOR * stack.reconcile_interval
    elapsed = time.monotonic() - stack.started
    outcome.figures["seconds since the scenario started (no reconciliation pass before)"] = (
        f"{elapsed:.0f} of {quiet_s:.0f}")
    outcome.check(f"every payment arrived by webhook (no reconciliation pass can run in the scenario's first "
                  f"{quiet_s:.0f} s; it took {elapsed:.0f} s)",
                  sources.get("webhook", 0) == len(invoices) and elapsed < quiet_s)
    return classes


async def wait_paid(stack: Stack, tenant: Tenant, invoices: list[Obj], timeout: float) -> None:
    names = [i["metadata"]["name"] for i in invoices]
    await stack.until("every invoice to be Paid", lambda: len(stack.paid(tenant.namespace, names)) == len(names),
                      timeout)
    await stack.sandbox.stripe.wait_deliveries_idle(timeout)
    await asyncio.sleep(1.5)  # the receiver's delivery counts are flushed every 0.5 s


async def webhook_storm(stack: Stack, size: Size, rng: random.Random, outcome: Outcome) -> None:
    tenant = await stack.tenant("chaos-storm")
    invoices = await stack.open_invoices(tenant, size.n(200))
    storm = Storm(stack, invoices, rng=rng)
    await storm.run()
    await storm.delivered()
    await wait_paid(stack, tenant, invoices, 120)
    classes = payment_figures(stack, tenant, invoices, storm, outcome)
    outcome.figures["injected faults"] = 0
    outcome.check("0 answers >= 500 (no fault injected)", classes.get("5xx", 0) == 0)
    outcome.check("0 deliveries without an answer", classes.get("no answer", 0) == 0)


async def kube_outage(stack: Stack, size: Size, rng: random.Random, outcome: Outcome,
                      outage_s: float = 10.0) -> None:
    tenant = await stack.tenant("chaos-outage")
    invoices = await stack.open_invoices(tenant, size.n(200))
    storm = Storm(stack, invoices, spread_s=8.0, rng=rng)
    storming = asyncio.create_task(storm.run())
    await asyncio.sleep(2.0)
    faults = stack.sandbox.kube.faults
    began = time.time()
    faults.outage = True
    await asyncio.sleep(outage_s)
    faults.outage = False
    ended = time.time()
    await storming
    await storm.delivered()
    await wait_paid(stack, tenant, invoices, 180)
    payment_figures(stack, tenant, invoices, storm, outcome, events_may_be_lost=True)
    log = stack.sandbox.stripe.delivery_log[storm.log_start:]
    # an answer is caused by the outage if the request was in flight while the API was down
    during = [a for a in log if a.status is not None and a.status >= 500 and a.at - a.duration_s <= ended
              and a.at >= began]
    outside = [a for a in log if a.status is not None and a.status >= 500 and a not in during]
    redelivered = {a.event_id for a in log if a.attempt > 1}
    outcome.figures.update({"outage seconds": outage_s, "5xx during the outage": len(during),
                            "5xx outside the outage": len(outside), "events redelivered": len(redelivered),
                            "lost": len(invoices) - len(stack.paid(tenant.namespace,
                                                                   [i["metadata"]["name"] for i in invoices]))})
    outcome.check("the receiver answered 5xx during the outage", len(during) > 0)
    outcome.check("0 answers >= 500 outside the outage", not outside)
    outcome.check("the stand-in redelivered", len(redelivered) > 0)
    outcome.check("0 payments lost", outcome.figures["lost"] == 0)


async def receiver_crash(stack: Stack, size: Size, rng: random.Random, outcome: Outcome) -> None:
    tenant = await stack.tenant("chaos-rx-crash")
    invoices = await stack.open_invoices(tenant, size.n(50, minimum=10))
    # a slower Kubernetes API keeps each delivery in the receiver for a while, so that the kills land mid-request
    stack.sandbox.kube.faults.latency = 0.2
    storm = Storm(stack, invoices, spread_s=8.0, rng=rng)
    storming = asyncio.create_task(storm.run())
    crashes = size.n(5, minimum=2)

    def cut_so_far() -> int:
        return sum(1 for a in stack.sandbox.stripe.delivery_log[storm.log_start:]
                   if a.status is None and a.error in CUT_MID_REQUEST)

    kills = 0
    # The planned kills at random moments, then (rarely needed) more until one has cut a request mid-flight.
    while kills < crashes or (cut_so_far() == 0 and kills < crashes + 10 and not storming.done()):
        await asyncio.sleep(rng.uniform(0.5, 2.0))
        await stack.receiver.restart()  # SIGKILL, then a new process on the same port
        await stack.receiver_ready()
        kills += 1
    await storming
    await storm.delivered()
    stack.sandbox.kube.faults.latency = 0.0
    await wait_paid(stack, tenant, invoices, 180)
    classes = payment_figures(stack, tenant, invoices, storm, outcome, events_may_be_lost=True)
    errors = Counter(a.error for a in stack.sandbox.stripe.delivery_log[storm.log_start:] if a.status is None)
    cut = sum(n for error, n in errors.items() if error in CUT_MID_REQUEST)
    outcome.figures.update({"receiver SIGKILLs": stack.receiver.kills,
                            "requests cut mid-request": cut,
                            "connections refused while down": errors.get("ClientConnectorError", 0),
                            "Kubernetes API latency injected (s)": 0.2,
                            "5xx answers": classes.get("5xx", 0)})
    outcome.check("the receiver was SIGKILLed with requests in flight", cut > 0)
    outcome.check("every payment completed by redelivery", len(stack.paid(
        tenant.namespace, [i["metadata"]["name"] for i in invoices])) == len(invoices))
