"""Scenario: money goes back after the storm. Paid invoices are refunded (in full, in part, in two parts), refunds
stay pending and settle or fail, payments are disputed and the disputes won or lost; each step's events delivered
three times, concurrently, half of them in reverse order; the invoices must end up telling what the Stripe
stand-in says happened, with one effect per event.

Each invoice follows one story of steps (``STORIES``). A story's steps are days apart at Stripe; here the next step
comes 0-1.2 s after the previous one's deliveries are done, so that some fall in the same second of Stripe's clock
(``created`` counts seconds, and is what orders the events of one refund or dispute) and some do not. The stories
of all invoices run at once, started in shuffled order. No fault is injected and the operator is not killed: every
invoice gets exactly one receipt (it was Paid while the operator ran), no answer is >= 500, and every Kubernetes
Event is posted.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fluxrate import conditions as cond
from fluxrate import money
from fluxrate.operator.receipt_email import receipt_message_id
from fluxrate_sandbox.chaos.outcome import Outcome, Size
from fluxrate_sandbox.chaos.stack import Obj, Stack, Tenant, header_id
from fluxrate_sandbox.chaos.storms import DUPLICATES, Storm, wait_paid
from fluxrate_sandbox.stripe_refunds import MoneyBackResult
from fluxrate_sandbox.stripe_standin import StripeStandin

STEP_GAP_S = (0.0, 1.2)  # between two steps of a story: the same second of Stripe's clock, or a later one

Step = Callable[[StripeStandin, str, "Story"], Awaitable[MoneyBackResult]]


@dataclass
class Story:
    """One invoice's life after its payment ``payment_id``: the steps taken and what they returned."""

    kind: str
    payment_id: str
    rng: random.Random
    results: list[MoneyBackResult] = field(default_factory=list)

    @property
    def refund_id(self) -> str:
        refund = next(r.refund for r in reversed(self.results) if r.refund is not None)
        assert refund is not None
        return str(refund["id"])

    @property
    def dispute_id(self) -> str:
        dispute = next(r.dispute for r in reversed(self.results) if r.dispute is not None)
        assert dispute is not None
        return str(dispute["id"])

    def reorder(self) -> bool:
        return self.rng.random() < 0.5

    async def run(self, standin: StripeStandin, steps: list[Step]) -> None:
        for number, step in enumerate(steps):
            if number:
                await asyncio.sleep(self.rng.uniform(*STEP_GAP_S))
            result = await step(standin, self.payment_id, self)
            self.results.append(result)
            await result.delivered


def _quarter(standin: StripeStandin, payment_id: str) -> int:
    return int(standin.payment_intents[payment_id].obj["amount"]) // 4


async def refund_all(standin: StripeStandin, pi: str, story: Story) -> MoneyBackResult:
    return await standin.refund(pi, duplicate=DUPLICATES, reorder=story.reorder())


async def refund_quarter(standin: StripeStandin, pi: str, story: Story) -> MoneyBackResult:
    return await standin.refund(pi, _quarter(standin, pi), reason="duplicate", duplicate=DUPLICATES,
                                reorder=story.reorder())


async def refund_all_pending(standin: StripeStandin, pi: str, story: Story) -> MoneyBackResult:
    # half of them wait for the customer (requires_action), half for the bank (pending); both count as refunded
    return await standin.refund(pi, pending=True, requires_action=story.rng.random() < 0.5, duplicate=DUPLICATES,
                                reorder=story.reorder())


async def refund_quarter_pending(standin: StripeStandin, pi: str, story: Story) -> MoneyBackResult:
    return await standin.refund(pi, _quarter(standin, pi), pending=True, duplicate=DUPLICATES,
                                reorder=story.reorder())


async def settle(standin: StripeStandin, pi: str, story: Story) -> MoneyBackResult:
    return await standin.settle_refund(story.refund_id, duplicate=DUPLICATES, reorder=story.reorder())


async def fail(standin: StripeStandin, pi: str, story: Story) -> MoneyBackResult:
    return await standin.fail_refund(story.refund_id, story.rng.choice(["expired_or_canceled_card", "declined",
                                                                         "lost_or_stolen_card"]),
                                     duplicate=DUPLICATES, reorder=story.reorder())


async def dispute(standin: StripeStandin, pi: str, story: Story) -> MoneyBackResult:
    return await standin.open_dispute(pi, story.rng.choice(["fraudulent", "product_not_received", "duplicate"]),
                                      duplicate=DUPLICATES, reorder=story.reorder())


async def evidence(standin: StripeStandin, pi: str, story: Story) -> MoneyBackResult:
    return await standin.submit_dispute_evidence(story.dispute_id, duplicate=DUPLICATES, reorder=story.reorder())


async def won(standin: StripeStandin, pi: str, story: Story) -> MoneyBackResult:
    return await standin.close_dispute(story.dispute_id, won=True, duplicate=DUPLICATES, reorder=story.reorder())


async def lost(standin: StripeStandin, pi: str, story: Story) -> MoneyBackResult:
    return await standin.close_dispute(story.dispute_id, won=False, duplicate=DUPLICATES, reorder=story.reorder())


# story -> (its steps, whether all the money goes back in the end)
STORIES: dict[str, tuple[list[Step], bool]] = {
    "full refund": ([refund_all], True),
    "partial refund": ([refund_quarter], False),
    "two partial refunds making the whole": ([refund_quarter, refund_all], True),
    "pending full refund, settled": ([refund_all_pending, settle], True),
    "pending partial refund, failed": ([refund_quarter_pending, fail], False),
    "pending full refund, failed": ([refund_all_pending, fail], False),
    "dispute won after evidence": ([dispute, evidence, won], False),
    "dispute lost": ([dispute, lost], True),
    "dispute lost after evidence": ([dispute, evidence, lost], True),
    "partial refund, then the rest disputed and lost": ([refund_quarter, dispute, lost], True),
}


# --- what the stand-in says happened, as the invoice should show it ---------------------------------------------

def expected_refunds(standin: StripeStandin, payment_id: str) -> list[tuple[Any, ...]]:
    charge = standin.money.charge_of(payment_id).obj
    return sorted((r.obj["id"], r.obj["status"], r.obj["amount"], str(money.from_minor(r.obj["amount"],
                   r.obj["currency"].upper())), r.obj["currency"].upper(), r.obj.get("reason"),
                   r.obj.get("failure_reason")) for r in standin.money.refunds.values()
                  if r.obj["charge"] == charge["id"])


def recorded_refunds(invoice: Obj) -> list[tuple[Any, ...]]:
    return sorted((r.get("id"), r.get("status"), r.get("amountMinor"), r.get("amount"), r.get("currency"),
                   r.get("reason"), r.get("failureReason")) for r in (invoice.get("status") or {}).get("refunds") or [])


def stripe_dispute(standin: StripeStandin, payment_id: str) -> Mapping[str, Any] | None:
    charge_id = standin.money.charge_of(payment_id).obj["id"]
    disputes = [d.obj for d in standin.money.disputes.values() if d.obj["charge"] == charge_id]
    return max(disputes, key=lambda d: d["created"]) if disputes else None


def expected_returned(standin: StripeStandin, payment_id: str) -> int:
    """Stripe's ``charge.amount_refunded``, plus the amount of a lost dispute."""
    charge = standin.money.charge_of(payment_id).obj
    found = stripe_dispute(standin, payment_id)
    return int(charge["amount_refunded"]) + (int(found["amount"]) if found and found["status"] == "lost" else 0)


def expected_dispute(found: Mapping[str, Any] | None) -> tuple[Any, ...] | None:
    if found is None:
        return None
    withdrawn = sum(int(t["amount"]) for t in found["balance_transactions"]) < 0
    return (found["id"], found["status"], found["amount"], found["currency"].upper(), found["reason"], withdrawn)


def recorded_dispute(invoice: Obj) -> tuple[Any, ...] | None:
    found = (invoice.get("status") or {}).get("dispute")
    if not found:
        return None
    return (found.get("id"), found.get("status"), found.get("amountMinor"), found.get("currency"),
            found.get("reason"), found.get("fundsWithdrawn"))


def dispute_condition_right(invoice: Obj, found: Mapping[str, Any] | None) -> bool:
    disputed = cond.get((invoice.get("status") or {}).get("conditions"), "Disputed")
    if found is None:
        return disputed is None
    wanted = {"won": ("False", "DisputeWon"), "lost": ("False", "DisputeLost")}.get(found["status"],
                                                                                  ("True", "DisputeOpen"))
    return disputed is not None and (disputed["status"], disputed["reason"]) == wanted


def receiver_counts(stack: Stack, tenant: Tenant) -> Counter[str]:
    counts = ((stack.integration(tenant.namespace, tenant.integration) or {}).get("status", {})
              .get("deliveries", {}).get("counts", {}))
    return Counter({k: int(v) for k, v in counts.items()})


# --- the scenario ------------------------------------------------------------------------------------------------

async def money_back(stack: Stack, size: Size, rng: random.Random, outcome: Outcome) -> None:
    tenant = await stack.tenant("chaos-money-back")
    standin = stack.sandbox.stripe
    invoices = await stack.open_invoices(tenant, size.n(100, minimum=len(STORIES)))
    storm = Storm(stack, invoices, rng=rng)
    await storm.run()
    await storm.delivered()
    await wait_paid(stack, tenant, invoices, 120)
    names = [i["metadata"]["name"] for i in invoices]

    def receipted() -> list[Obj]:
        return [i for i in stack.paid(tenant.namespace, names) if ((i["status"].get("receipt") or {}).get("sentAt"))]

    await stack.until("every paid invoice's receipt to be sent", lambda: len(receipted()) == len(names), 120)
    paid = {i["metadata"]["name"]: i for i in stack.paid(tenant.namespace, names)}
    payment_of = {name: paid[name]["status"]["payment"]["providerPaymentId"] for name in names}

    kinds = list(STORIES)
    order = names[:]
    rng.shuffle(order)
    stories = {name: Story(kinds[n % len(kinds)], payment_of[name], random.Random(rng.random()))
               for n, name in enumerate(order)}
    before = receiver_counts(stack, tenant)
    log_start = len(standin.delivery_log)

    async def started(name: str, delay: float) -> None:
        await asyncio.sleep(delay)
        await stories[name].run(standin, STORIES[stories[name].kind][0])

    await asyncio.gather(*(started(name, rng.uniform(0.0, 1.0)) for name in order))
    await standin.wait_deliveries_idle(120)
    await asyncio.sleep(1.5)  # the receiver's delivery counts are flushed every 0.5 s
    judge(stack, tenant, names, stories, log_start, before, outcome)


def judge(stack: Stack, tenant: Tenant, names: list[str], stories: dict[str, Story], log_start: int,
          before: Counter[str], outcome: Outcome) -> None:
    standin = stack.sandbox.stripe
    invoices = {name: stack.invoice(tenant.namespace, name) for name in names}
    refunds_right = returned_right = phase_right = dispute_right = story_right = 0
    phases: Counter[str] = Counter()
    for name, invoice in invoices.items():
        status, story = invoice.get("status") or {}, stories[name]
        pi = story.payment_id
        paid_minor = int(standin.payment_intents[pi].obj["amount"])
        returned = expected_returned(standin, pi)
        amount = status.get("amountRefunded") or {}
        phase = status.get("phase")
        phases[str(phase)] += 1
        refunds_right += recorded_refunds(invoice) == expected_refunds(standin, pi)
        returned_right += int(amount.get("minor") or 0) == returned and amount.get("currency", "USD") == "USD"
        phase_right += phase == ("Refunded" if returned >= paid_minor else "Paid")
        found = stripe_dispute(standin, pi)
        dispute_right += recorded_dispute(invoice) == expected_dispute(found) and dispute_condition_right(invoice,
                                                                                                          found)
        story_right += (returned >= paid_minor) == STORIES[story.kind][1]
    disputed = {name for name, story in stories.items() if stripe_dispute(standin, story.payment_id)}
    opened = Counter(e["involvedObject"]["name"] for e in stack.events(tenant.namespace, "DisputeOpened"))
    warnings = all(e.get("type") == "Warning" for e in stack.events(tenant.namespace, "DisputeOpened"))
    results = [r for story in stories.values() for r in story.results]
    distinct = sum(len(r.events) for r in results)
    log = standin.delivery_log[log_start:]
    classes = Counter("no answer" if a.status is None else f"{a.status // 100}xx" for a in log)
    counts = receiver_counts(stack, tenant) - before
    receipts = receipt_figures(stack, list(invoices.values()), outcome)
    refunds = [r.obj for r in standin.money.refunds.values()]
    outcome.figures.update({
        "invoices": len(names),
        **{f"story: {kind}": sum(1 for s in stories.values() if s.kind == kind) for kind in STORIES},
        "refunds": len(refunds),
        **{f"refunds {k}": v for k, v in sorted(Counter(r["status"] for r in refunds).items())},
        "disputes": len(disputed),
        **{f"disputes {k}": v for k, v in sorted(Counter(d.obj["status"] for d in standin.money.disputes.values())
                                                 .items())},
        **{f"phase {k}": v for k, v in sorted(phases.items())},
        "distinct events": distinct, "events sent": distinct * DUPLICATES, "delivery attempts": len(log),
        **{f"answers {k}": v for k, v in sorted(classes.items())},
        **{f"receiver outcome {k}": v for k, v in sorted(counts.items()) if v},
        "DisputeOpened Events": sum(opened.values()),
        "receipts": receipts,
    })
    n = len(names)
    outcome.check("every invoice's status.refunds = the stand-in's refunds of its payment (id, status, amount, "
                  "currency, reason, failure reason)", refunds_right == n)
    outcome.check("every invoice's status.amountRefunded = what Stripe returned (the charge's amount_refunded, "
                  "plus a lost dispute)", returned_right == n)
    outcome.check("phase Refunded exactly for the fully returned, Paid for the rest", phase_right == n)
    outcome.check("every story returned what it meant to (the scenario's own premise)", story_right == n)
    outcome.check("status.dispute and the Disputed condition match the stand-in's dispute", dispute_right == n)
    outcome.check("one DisputeOpened Warning Event per dispute, none for the undisputed",
                  warnings and set(opened) == disputed and all(v == 1 for v in opened.values()))
    outcome.check(f"every distinct event had one effect: applied or ignored (no change) once, "
                  f"{DUPLICATES - 1} redeliveries each answered duplicate",
                  counts["applied"] + counts["ignored"] == distinct
                  and counts["duplicate"] == distinct * (DUPLICATES - 1))
    outcome.check("0 unmatched (every event is of a fluxrate payment)", counts["unmatched"] == 0)
    outcome.check("every delivery answered 200 (duplicates too) on its first attempt",
                  len(log) == distinct * DUPLICATES and classes.get("2xx", 0) == len(log))
    outcome.check("0 answers >= 500 (no fault injected)", classes.get("5xx", 0) == 0)


def receipt_figures(stack: Stack, invoices: list[Obj], outcome: Outcome) -> int:
    """Without kills: exactly one receipt email per paid invoice, under its payment's Message-ID."""
    by_recipient: dict[str, Counter[str]] = {}
    for m in stack.sandbox.smtp.messages:
        for to in m.rcpt_tos:
            by_recipient.setdefault(to, Counter())[header_id(m.message)] += 1
    right = 0
    for invoice in invoices:
        payment_id = invoice["status"]["payment"]["providerPaymentId"]
        wanted = receipt_message_id(payment_id, invoice["metadata"]["uid"])
        ids = by_recipient.get(invoice["spec"]["customer"]["email"], Counter())
        receipts = {k: v for k, v in ids.items() if k.startswith("<receipt.")}
        right += receipts == {wanted: 1} and (invoice["status"].get("receipt") or {}).get("messageId") == wanted
    outcome.check("exactly one receipt email per paid invoice, under <receipt.{paymentId}.{uid}@fluxrate.invoice>",
                  right == len(invoices))
    return sum(sum(1 for k in ids.elements() if k.startswith("<receipt.")) for ids in by_recipient.values())
