"""Scenario: due dates pass, reminders and receipts go out, while the operator is SIGKILLed at random moments.

Open invoices (emailed) get a ``spec.dueDate`` a few seconds ahead, spread over the window (an RFC 3339 time), and
their own schedule ``spec.reminders: {daysBeforeDue: [], daysAfterDue: [0]}``: one reminder, ``after-0d``, at the
due moment. Other Open invoices are paid at random moments of the same window, each owed its receipt. Meanwhile the
operator is killed and restarted (even kills as soon as an email was accepted by the SMTP server and not yet
recorded, odd kills at a random moment). Every invoice must end Overdue with its reminder sent, every paid one with
its receipt sent, under the email contract (``emails``: at least once, one Message-ID per email, extra copies no
more than kills between the SMTP server's acceptance and the status write). Reminders and receipts are waited for
120 s after the last kill (the reconciliation interval is an hour here: an email left to the reconciliation pass
is reported missing, with the statuses in ``unfinished.json`` of the scenario's directory).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random

from fluxrate import conditions as cond
from fluxrate.operator.email import reminder_message_id
from fluxrate_sandbox.chaos.emails import KillWindows, email_figures
from fluxrate_sandbox.chaos.outcome import Outcome, Size
from fluxrate_sandbox.chaos.stack import GROUP_VERSION, Obj, Stack, invoice_manifest
from fluxrate_sandbox.processes import WaitTimeout

STEP = "after-0d"
LEAD_S = 4.0  # the first due moment, after the due dates are written


def reminded(invoice: Obj) -> bool:
    """Overdue, and its after-0d reminder recorded as sent."""
    status = invoice.get("status") or {}
    sent = any(r.get("step") == STEP and r.get("sentAt") for r in status.get("reminders") or [])
    return sent and cond.is_true(status.get("conditions"), "Overdue")


def receipted(invoice: Obj) -> bool:
    status = invoice.get("status") or {}
    return status.get("phase") == "Paid" and bool((status.get("receipt") or {}).get("sentAt"))


async def reminders_under_kills(stack: Stack, size: Size, rng: random.Random, outcome: Outcome) -> None:
    tenant = await stack.tenant("chaos-reminders")
    standin = stack.sandbox.stripe
    count, paying, kills = size.n(50, minimum=10), size.n(20, minimum=5), size.n(12, minimum=5)
    span = 20.0 if size.divisor == 1 else 8.0  # due moments over [now + LEAD_S, now + LEAD_S + span]
    for name in [f"due-{i:04d}" for i in range(count)]:
        body = invoice_manifest(tenant, name)
        body["spec"]["reminders"] = {"daysBeforeDue": [], "daysAfterDue": [0]}
        stack.sandbox.kube.create_object(body)
    due_names = [f"due-{i:04d}" for i in range(count)]
    pay_names = stack.create_invoices(tenant, paying, prefix="pay")
    every = due_names + pay_names
    await stack.until(f"{len(every)} invoices to be Open and emailed",
                      lambda: len(stack.finalized(tenant.namespace, every)) == len(every), 180)
    start = dt.datetime.now(dt.UTC).replace(microsecond=0)
    due_at: dict[str, dt.datetime] = {}
    for name in due_names:
        due_at[name] = start + dt.timedelta(seconds=round(LEAD_S + rng.uniform(0.0, span)))
        stack.sandbox.kube.patch_object(GROUP_VERSION, "invoices", tenant.namespace, name,
                                        {"spec": {"dueDate": due_at[name].strftime("%Y-%m-%dT%H:%M:%SZ")}})
    links = {name: stack.invoice(tenant.namespace, name)["status"]["paymentLink"]["id"] for name in pay_names}
    stack.sandbox.stripe.set_faults(latency_max_s=0.5)  # receipts ask Stripe for the payment method: kills land then
    # every Kubernetes request takes 0.1 s: the status write recording an email comes a while after the SMTP server
    # accepted it, so that the targeted kills land between the two (the window the contract allows a resend for)
    stack.sandbox.kube.faults.latency = 0.1

    async def pay(name: str) -> str:
        await asyncio.sleep(rng.uniform(0.0, LEAD_S + span))
        return str((await standin.pay(links[name])).payment_intent["id"])

    paying_task = asyncio.gather(*(pay(name) for name in pay_names))
    windows = KillWindows(stack, tenant.namespace)
    loop = asyncio.get_running_loop()
    end = loop.time() + LEAD_S + span + 2.0
    targeted_hits = number = 0
    # the planned kills, and more until the last due moment (and the last payment) has passed
    while number < kills or (loop.time() < end and number < 3 * kills):
        if number % 2 == 0:  # as soon as an accepted email is not recorded yet (or after 4 s without one)
            until = loop.time() + 4.0
            while loop.time() < until:
                if windows.unrecorded():
                    break
                await asyncio.sleep(0.01)
        else:
            await asyncio.sleep(rng.uniform(0.3, 2.5))
        targeted_hits += await windows.kill_and_restart() > 0
        number += 1
    paid_with = dict(zip(pay_names, await paying_task, strict=True))
    stack.sandbox.kube.faults.latency = 0.0
    try:  # on a timeout the checks below say what is missing
        await stack.until("every due invoice Overdue with its reminder sent, every paid one with its receipt", lambda: (
            all(reminded(stack.invoice(tenant.namespace, n)) for n in due_names)
            and all(receipted(stack.invoice(tenant.namespace, n)) for n in pay_names)), 120)
    except WaitTimeout:
        stuck = [i for i in stack.invoices(tenant.namespace)
                 if (i["metadata"]["name"] in due_names and not reminded(i))
                 or (i["metadata"]["name"] in pay_names and not receipted(i))]
        outcome.figures["waited for the reminders and receipts (s)"] = "120, timed out"
        outcome.figures["not done (statuses in unfinished.json)"] = " ".join(
            f"{i['metadata']['name']} (reminders {(i.get('status') or {}).get('reminders')}, receipt "
            f"{(i.get('status') or {}).get('receipt')})" for i in stuck)
        (stack.operator.log_file.parent / "unfinished.json").write_text(json.dumps(stuck, indent=1))
    standin.reset_faults()
    await asyncio.sleep(3.0)  # a restarted operator would resend now
    judge(stack, tenant.namespace, due_names, pay_names, due_at, paid_with, windows, outcome)
    outcome.figures["kills that landed in an email's window"] = targeted_hits


def judge(stack: Stack, namespace: str, due_names: list[str], pay_names: list[str], due_at: dict[str, dt.datetime],
          paid_with: dict[str, str], windows: KillWindows, outcome: Outcome) -> None:
    due = [stack.invoice(namespace, n) for n in due_names]
    paid = [stack.invoice(namespace, n) for n in pay_names]
    overdue = [i for i in due if cond.is_true((i.get("status") or {}).get("conditions"), "Overdue")]
    right_record = 0
    lateness: list[float] = []
    for invoice in due:
        records = (invoice.get("status") or {}).get("reminders") or []
        uid = invoice["metadata"]["uid"]
        sent = [r for r in records if r.get("sentAt")]
        right_record += len(records) == 1 and len(sent) == 1 and sent[0].get("step") == STEP \
            and sent[0].get("messageId") == reminder_message_id(STEP, uid)
        if sent:
            at = dt.datetime.fromisoformat(str(sent[0]["sentAt"]).replace("Z", "+00:00"))
            lateness.append((at - due_at[invoice["metadata"]["name"]]).total_seconds())
    early = [s for s in lateness if s < 0]
    right_payment = sum(1 for i in paid if i["status"]["phase"] == "Paid"
                        and i["status"]["payment"]["providerPaymentId"] == paid_with[i["metadata"]["name"]])
    outcome.figures.update({
        "invoices with a due date (one reminder: after-0d)": len(due), "invoices paid during the kills": len(paid),
        "operator SIGKILLs": stack.operator.kills,
        "Overdue": len(overdue), "reminders recorded": sum(1 for _ in lateness),
        "reminder sent after its due moment (s): max": f"{max(lateness, default=0.0):.1f}",
        "receipts recorded": sum(1 for i in paid if receipted(i)),
        "kill windows by email kind": " ".join(f"{k} {v}" for k, v in sorted(windows.by_kind.items())) or "none",
        "ReminderSent Events": len(stack.events(namespace, "ReminderSent")),
        "ReceiptFailed Events": " | ".join(sorted({e.get("message", "")[:90] for e in
                                                   stack.events(namespace, "ReceiptFailed")})) or 0,
    })
    email_figures(stack, due + paid, windows.count, outcome, receipts=True, reminders=[STEP])
    outcome.check("every invoice past its due date Overdue=True", len(overdue) == len(due))
    outcome.check("every invoice's after-0d reminder recorded once in status.reminders, sent, with its Message-ID",
                  right_record == len(due))
    outcome.check("no reminder sent before its due moment", not early)
    outcome.check("every invoice paid during the kills Paid by its payment, its receipt recorded",
                  right_payment == len(paid) and all(receipted(i) for i in paid))
    outcome.check("the operator was SIGKILLed", stack.operator.kills > 0)
