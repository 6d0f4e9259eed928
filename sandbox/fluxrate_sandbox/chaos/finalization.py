"""Scenarios 3 and 4: invoices are finalized while Stripe misbehaves or the operator is SIGKILLed; every invoice
must end Open with exactly one payment link (the stand-in's counter) and its email, sent at least once under one
Message-ID, with no more extra copies than kills between the SMTP server's acceptance and the status write
(``emails.KillWindows``; none without kills)."""

from __future__ import annotations

import asyncio
import random

from fluxrate_sandbox.chaos.emails import KillWindows, email_figures
from fluxrate_sandbox.chaos.outcome import Outcome, Size
from fluxrate_sandbox.chaos.stack import Stack, Tenant


def finalization_figures(stack: Stack, tenant: Tenant, names: list[str], outcome: Outcome, windows: int = 0) -> None:
    invoices = [stack.invoice(tenant.namespace, name) for name in names]
    opened = [i for i in invoices if (i.get("status") or {}).get("phase") == "Open"
              and (i["status"].get("paymentLink") or {}).get("id")]
    links = stack.links_per_invoice(invoices)
    emails = stack.emails_per_invoice(invoices)
    outcome.figures.update({
        "invoices": len(names), "open with a link": len(opened),
        "links created": sum(links), "invoices with exactly 1 link": sum(1 for n in links if n == 1),
        "invoices with exactly 1 email": sum(1 for n in emails if n == 1),
        "Stripe requests": stack.sandbox.stripe.count_requests(),
        "Stripe idempotent replays": stack.sandbox.stripe.idempotent_replays,
    })
    outcome.check("every invoice Open with its link", len(opened) == len(names))
    outcome.check("exactly one payment link per invoice", all(n == 1 for n in links))
    outcome.check("every invoice emailed", all(n >= 1 for n in emails))
    email_figures(stack, invoices, windows, outcome)


async def stripe_faults(stack: Stack, size: Size, rng: random.Random, outcome: Outcome) -> None:
    tenant = await stack.tenant("chaos-stripe-faults")
    standin = stack.sandbox.stripe
    errors_before, limited_before = standin.injected_errors, standin.rate_limited
    standin.set_faults(error_rate=0.2, rate_limit_rate=0.1, latency_s=0.0, latency_max_s=2.0)
    count = size.n(200)
    names = stack.create_invoices(tenant, count)
    try:
        await stack.until(f"{count} invoices to be Open and emailed",
                          lambda: len(stack.finalized(tenant.namespace, names)) == count, 600)
    finally:
        standin.reset_faults()
    await asyncio.sleep(2.0)  # anything still retrying would create a second link or email now
    outcome.figures.update({"injected 500s": standin.injected_errors - errors_before,
                            "429s (injected + token bucket)": standin.rate_limited - limited_before,
                            "latency spikes up to (s)": 2.0})
    finalization_figures(stack, tenant, names, outcome)
    # Either kind suffices to make the run meaningful; requiring both would fail ~1 CI run in 70 by chance
    # (no 429 among ~40 requests at 10 %). The figures report both counts.
    outcome.check("faults were injected", standin.injected_errors > errors_before or
                  standin.rate_limited > limited_before)


async def operator_crash(stack: Stack, size: Size, rng: random.Random, outcome: Outcome) -> None:
    """Invoices arrive in batches; after each batch the operator is SIGKILLed at a random moment (while booting,
    connecting, creating links or emailing) and restarted at once."""
    tenant = await stack.tenant("chaos-op-crash")
    # Stripe answers after 0-1 s, so finalizations spread out and kills land with requests in flight.
    stack.sandbox.stripe.set_faults(latency_max_s=1.0)
    count = size.n(100)
    crashes = size.n(20, minimum=5)
    batch = -(-count // crashes)
    names: list[str] = []
    under_way = 0
    done_at_kill: list[str] = []
    windows = KillWindows(stack, tenant.namespace)
    for wave in range(crashes):
        if len(names) < count:
            names += stack.create_invoices(tenant, min(batch, count - len(names)), prefix=f"inv-{wave:02d}")
        loop = asyncio.get_running_loop()
        kill_at = loop.time() + rng.uniform(0.3, 3.0)
        while loop.time() < kill_at:
            done = len(stack.finalized(tenant.namespace, names))
            if wave == 0 and 0 < done < len(names):
                break  # the first kill always lands mid-finalization; the others at random moments
            await asyncio.sleep(0.02)
        done = len(stack.finalized(tenant.namespace, names))
        await windows.kill_and_restart()  # SIGKILL, count the email windows it landed in, then a new process
        under_way += done < len(names)
        done_at_kill.append(f"{done}/{len(names)}")
    await stack.until(f"{count} invoices to be Open and emailed",
                      lambda: len(stack.finalized(tenant.namespace, names)) == count, 300)
    await asyncio.sleep(3.0)  # a restarted operator would resend or recreate now
    outcome.figures.update({"operator SIGKILLs": stack.operator.kills, "kills with finalization under way": under_way,
                            "finalized/created at each kill": " ".join(done_at_kill)})
    finalization_figures(stack, tenant, names, outcome, windows.count)
    outcome.check("the operator was SIGKILLed during finalization", under_way > 0)
