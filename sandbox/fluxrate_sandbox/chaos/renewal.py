"""Scenario: failed bank debits use invoices' links up while the operator is SIGKILLed at random moments; each
failure must give exactly one replacement link (the stand-in's counter), emailed (at least once, one Message-ID
per link, extra copies no more than kills between the SMTP server's acceptance and the status write), the old link
deactivated, and the invoice then paid through the new link, its receipt emailed (under the same contract, one
Message-ID per payment)."""

from __future__ import annotations

import asyncio
import random

from fluxrate_sandbox.chaos.emails import KillWindows, email_figures
from fluxrate_sandbox.chaos.outcome import Outcome, Size
from fluxrate_sandbox.chaos.stack import Obj, Stack


def renewed(invoice: Obj, first_link: str) -> bool:
    """Its current link replaces ``first_link`` and was emailed."""
    status = invoice.get("status") or {}
    link, notification = status.get("paymentLink") or {}, status.get("notification") or {}
    return status.get("phase") == "Open" and link.get("id") not in (None, first_link) \
        and notification.get("linkId") == link["id"] and bool(notification.get("sentAt"))


async def link_renewal(stack: Stack, size: Size, rng: random.Random, outcome: Outcome) -> None:
    tenant = await stack.tenant("chaos-renewal")
    standin = stack.sandbox.stripe
    count = size.n(50)
    kills = size.n(10, minimum=3)
    opened = await stack.open_invoices(tenant, count)
    first = {i["metadata"]["name"]: i["status"]["paymentLink"]["id"] for i in opened}
    names = list(first)
    standin.set_faults(latency_max_s=0.5)  # Stripe answers after 0-0.5 s: kills land with renewals in flight

    def done() -> list[str]:
        return [n for n in names if renewed(stack.invoice(tenant.namespace, n), first[n])]

    def in_flight() -> int:
        """Renewals started and not finished: status.linkRequest written, or a second link not yet recorded."""
        created = standin.links_created_by_invoice
        count = 0
        for name in names:
            invoice = stack.invoice(tenant.namespace, name)
            status = invoice.get("status") or {}
            current = (status.get("paymentLink") or {}).get("id")
            count += bool(status.get("linkRequest")) or (created.get(invoice["metadata"]["uid"], 0) > 1
                                                         and current == first[name])
        return count

    failures: dict[str, str] = {}
    under_way = 0
    at_kill: list[str] = []
    windows = KillWindows(stack, tenant.namespace)
    batch = -(-count // kills)
    for wave in range(kills):
        for name in names[wave * batch:(wave + 1) * batch]:
            failure = await standin.pay(first[name], method="delayed", outcome="failed")
            failures[name] = failure.payment_intent["id"]
        loop = asyncio.get_running_loop()
        # Even waves: killed once a renewal is in flight (its request recorded, or its link created and not yet
        # recorded), plus 0-0.3 s; odd waves: at a random moment.
        targeted = wave % 2 == 0
        kill_at = loop.time() + (8.0 if targeted else rng.uniform(0.2, 2.0))
        while loop.time() < kill_at:
            if targeted and in_flight():
                await asyncio.sleep(rng.uniform(0.0, 0.3))
                break
            await asyncio.sleep(0.02)
        finished, flying = len(done()), in_flight()
        await windows.kill_and_restart()  # SIGKILL, count the email windows it landed in, then a new process
        under_way += flying > 0
        at_kill.append(f"{finished}/{len(failures)}({flying})")
    await stack.until(f"{count} invoices to get a replacement link, emailed", lambda: len(done()) == count, 300)
    standin.reset_faults()
    await asyncio.sleep(3.0)  # a restarted operator would create a third link or resend now
    invoices = [stack.invoice(tenant.namespace, n) for n in names]
    links = stack.links_per_invoice(invoices)
    emails = stack.emails_per_invoice(invoices)
    replaced_inactive = sum(1 for n in names if standin.payment_links[first[n]].obj["active"] is False)
    recorded = sum(1 for i in invoices if [link["id"] for link in i["status"].get("paymentLinks") or []]
                   == [first[i["metadata"]["name"]], i["status"]["paymentLink"]["id"]])

    # then each customer pays through the new link
    new = {i["metadata"]["name"]: i["status"]["paymentLink"]["id"] for i in invoices}
    paid_with = {name: (await standin.pay(new[name])).payment_intent["id"] for name in names}
    await stack.until(f"{count} invoices to be Paid", lambda: len(stack.paid(tenant.namespace, names)) == count, 120)
    paid = stack.paid(tenant.namespace, names)
    right = sum(1 for i in paid if i["status"]["payment"]["providerPaymentId"] == paid_with[i["metadata"]["name"]]
                and i["status"]["payment"]["source"] == "webhook")
    # each payment's receipt (the invoices were Paid while the operator ran), then a moment for any second copy
    await stack.until(f"{count} receipts to be sent", lambda: all(
        ((stack.invoice(tenant.namespace, n).get("status") or {}).get("receipt") or {}).get("sentAt")
        for n in names), 120)
    await asyncio.sleep(1.0)
    invoices = [stack.invoice(tenant.namespace, n) for n in names]
    new_inactive = sum(1 for n in names if standin.payment_links[new[n]].obj["active"] is False)
    outcome.figures.update({
        "invoices": count, "failed bank debits": len(failures), "operator SIGKILLs": stack.operator.kills,
        "kills with renewals in flight": under_way,
        "renewed/failed (in flight) at each kill": " ".join(at_kill),
        "links created": sum(links), "invoices with exactly 2 links": sum(1 for n in links if n == 2),
        "history recorded (first, replacement)": recorded, "replaced links deactivated": replaced_inactive,
        "invoices with exactly 2 link emails": sum(1 for n in emails if n == 2),
        "Paid through the new link by webhook": right, "new links deactivated after payment": new_inactive,
        "Stripe requests": standin.count_requests(), "Stripe idempotent replays": standin.idempotent_replays,
    })
    email_figures(stack, invoices, windows.count, outcome, receipts=True)
    outcome.check("exactly one replacement link per failure", all(n == 2 for n in links))
    outcome.check("every invoice's links recorded in status.paymentLinks", recorded == count)
    outcome.check("every replaced link deactivated in Stripe", replaced_inactive == count)
    outcome.check("every replacement emailed", all(n >= 2 for n in emails))
    outcome.check("every invoice Paid through its new link, by webhook", right == count)
    outcome.check("the operator was SIGKILLed with renewals in flight", under_way > 0)
