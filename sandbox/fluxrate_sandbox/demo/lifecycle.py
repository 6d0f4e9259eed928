"""The demo after the payment: the receipt, a partial refund, an invoice that falls due and is reminded, and the
invoices as ``kubectl get inv`` prints them (from the CRD's printer columns)."""

from __future__ import annotations

import datetime as dt
import math
import re
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from fluxrate import conditions as cond
from fluxrate import money
from fluxrate.crds import crd_for_kind, served_version
from fluxrate.kube import Kube
from fluxrate_sandbox.demo.narrator import Narrator
from fluxrate_sandbox.processes import wait_for
from fluxrate_sandbox.smtp_sink import ReceivedMessage
from fluxrate_sandbox.stack import Sandbox

EMAIL_KINDS = ("invoice", "receipt", "reminder")
DUE_LEAD = 2  # seconds from the patch to the due moment: the invoice's email is out already (a reminder needs it)


def email_kind(mail: ReceivedMessage) -> str:
    """What an email is, from its Message-ID (``<receipt.…>``, ``<reminder.…>``, else the invoice's link email)."""
    message_id = str(mail.message["Message-ID"] or "").strip()  # a parsed long header may keep a folding space
    return next((kind for kind in EMAIL_KINDS[1:] if message_id.startswith(f"<{kind}.")), "invoice")


def email_counts(sandbox: Sandbox) -> str:
    counts = Counter(email_kind(mail) for mail in sandbox.smtp.messages)
    return f"{sum(counts.values())} ({', '.join(f'{kind} {counts[kind]}' for kind in EMAIL_KINDS)})"


def _message(sandbox: Sandbox, message_id: str) -> list[ReceivedMessage]:
    return [mail for mail in sandbox.smtp.messages if str(mail.message["Message-ID"] or "").strip() == message_id]


def _status(obj: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict((obj or {}).get("status") or {})


# ---------------------------------------------------------------------------------------------- kubectl get inv

_PATH_PART = re.compile(r'\.(\w+)|\[\?\(@\.(\w+)=="([^"]*)"\)\]')


def json_path(obj: Any, path: str) -> Any:
    """The JSONPath subset the CRDs' printer columns use: ``.a.b`` and ``[?(@.type=="Overdue")]``."""
    value = obj
    for field, key, wanted in _PATH_PART.findall(path):
        if field:
            value = value.get(field) if isinstance(value, Mapping) else None
        else:
            value = next((item for item in value if isinstance(item, Mapping) and item.get(key) == wanted),
                         None) if isinstance(value, list) else None
    return value


def age(created: str | None, now: float) -> str:
    """A creationTimestamp as kubectl's AGE column prints a young object."""
    try:
        moment = dt.datetime.fromisoformat(str(created).replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    seconds = max(int(now - moment.timestamp()), 0)
    return f"{seconds}s" if seconds < 120 else f"{seconds // 60}m{seconds % 60}s"


def printer_table(kind: str, objs: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Headers and rows as ``kubectl get`` prints them: the columns of priority 0, a field not set left blank (the
    API server's Table has no cell for it)."""
    columns = [c for c in served_version(crd_for_kind(kind)).get("additionalPrinterColumns", [])
               if not c.get("priority")]
    now = time.time()
    rows = []
    for obj in objs:
        row = [obj["metadata"]["name"]]
        for column in columns:
            value = json_path(obj, column["jsonPath"])
            row.append(age(value, now) if column["type"] == "date" else "" if value is None else str(value))
        rows.append(row)
    return ["NAME", *(c["name"].upper() for c in columns)], rows


async def show_kubectl_get(say: Narrator, kube: Kube, namespace: str, names: Sequence[str]) -> None:
    say.step(f"What `kubectl -n {namespace} get inv` shows")
    objs = [obj for obj in [await kube.get_object("invoices", namespace, name) for name in names] if obj]
    say.table(*printer_table("Invoice", objs))


# ---------------------------------------------------------------------------------------------- receipt

async def show_receipt(say: Narrator, kube: Kube, sandbox: Sandbox, namespace: str, name: str) -> None:
    say.step(f"The customer's receipt for {name}")
    obj = await wait_for("the receipt to be recorded", lambda: kube.get_object("invoices", namespace, name),
                         lambda o: bool((_status(o).get("receipt") or {}).get("sentAt")))
    receipt = _status(obj)["receipt"]
    (mail,) = await wait_for("the receipt email", lambda: _message(sandbox, receipt["messageId"]), bool)
    say.detail(f"To: {mail.message['To']}", f"Subject: {mail.subject.strip()}")  # a folded header
    say.block(mail.body("plain"))
    say.ok(f"status.receipt: sent {receipt['sentAt']} for {receipt['paymentId']}, Message-ID {receipt['messageId']}")


# ---------------------------------------------------------------------------------------------- partial refund

def partial_amount(spec: Mapping[str, Any], paid_minor: int) -> tuple[int, str]:
    """What the demo refunds: one unit of the invoice's last line item (one extra seat), or half when that would
    be all of it; and why, for the narration."""
    item = (spec.get("lineItems") or [{}])[-1]
    minor = money.to_minor(str(item.get("unitAmount") or "0"), str(spec["currency"]))
    if 0 < minor < paid_minor:
        return minor, f"one \"{item.get('description')}\" back"
    return paid_minor // 2, "half of it back"


async def show_partial_refund(say: Narrator, kube: Kube, sandbox: Sandbox, namespace: str, name: str) -> None:
    obj = await kube.get_object("invoices", namespace, name)
    payment = _status(obj)["payment"]
    currency, paid_minor = payment["currency"], int(payment["amountMinor"])
    minor, why = partial_amount((obj or {})["spec"], paid_minor)
    amount = money.format_minor(minor, currency)
    say.step(f"The merchant refunds {amount} of {name} ({why}) in Stripe")
    say.detail("In the Stripe Dashboard (Payments → the payment → Refund) or POST /v1/refunds; here the stand-in. "
               "fluxrate never refunds: it records what Stripe reports.")
    refunded = await sandbox.stripe.refund(payment["providerPaymentId"], amount=minor)
    await refunded.delivered
    say.detail("events: " + ", ".join(refunded.event_types))
    done = await wait_for("the refund to be recorded", lambda: kube.get_object("invoices", namespace, name),
                          lambda o: (_status(o).get("amountRefunded") or {}).get("minor") == minor
                          and any(r.get("status") == "succeeded" for r in _status(o).get("refunds") or []))
    status = _status(done)
    say.table(["status.refunds[].id", "amount", "status", "reason", "createdAt"],
              [[r["id"], f"{r['amount']} {r['currency']}", r["status"], r.get("reason") or "", r["createdAt"]]
               for r in status["refunds"]])
    say.ok(f"status.amountRefunded: {status['amountRefunded']['display']} of {payment['amount']} {currency}; "
           f"phase stays {status['phase']} (a refund of all of it makes the invoice Refunded)")


# ---------------------------------------------------------------------------------------------- overdue

def overdue_invoice(docs: Sequence[Mapping[str, Any]], paid: str) -> str | None:
    """The invoice the demo lets fall due: one with its own ``spec.reminders``, else the last other one."""
    others = [d for d in docs if d["kind"] == "Invoice" and d["metadata"]["name"] != paid]
    own = [d for d in others if (d.get("spec") or {}).get("reminders")]
    chosen = (own or others[-1:] or [None])[0]
    return chosen["metadata"]["name"] if chosen else None


async def fall_due_soon(say: Narrator, kube: Kube, namespace: str, name: str) -> None:
    """Once its email is out, move the invoice's ``spec.dueDate`` a few seconds ahead (it stays editable after
    the invoice is finalized); its schedule gets a step at the due moment (after-0d) if it has none."""
    obj = await wait_for(f"{name}'s email to be sent", lambda: kube.get_object("invoices", namespace, name),
                         lambda o: bool((_status(o).get("notification") or {}).get("sentAt")))
    due = dt.datetime.fromtimestamp(math.ceil(time.time()) + DUE_LEAD, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    spec: dict[str, Any] = {"dueDate": due}
    reminders = dict((obj or {})["spec"].get("reminders") or {})
    if reminders.get("enabled") is False or 0 not in (reminders.get("daysAfterDue") or []):
        spec["reminders"] = reminders = {"enabled": True, "daysBeforeDue": [], "daysAfterDue": [0]}
    await kube.patch_object("invoices", namespace, name, {"spec": spec})
    say.step(f"{name} falls due in {DUE_LEAD} seconds (it runs alongside the payment below)")
    say.detail(f"spec.dueDate: {due}   (an RFC 3339 time; a date such as 2026-12-31 means the end of that day)",
               f"spec.reminders: daysBeforeDue {reminders.get('daysBeforeDue', [3])}, daysAfterDue "
               f"{reminders.get('daysAfterDue', [1, 7, 14])} (its own schedule, replacing the integration's; "
               "after-0d is the moment it becomes overdue)")


async def overdue_and_reminded(kube: Kube, sandbox: Sandbox, namespace: str, name: str
                               ) -> tuple[dict[str, Any], ReceivedMessage]:
    """Wait (in parallel with the payment) until the operator marked the invoice Overdue and emailed its reminder."""
    obj = await wait_for(f"{name} to be Overdue with its reminder sent",
                         lambda: kube.get_object("invoices", namespace, name),
                         lambda o: cond.is_true(_status(o).get("conditions"), "Overdue")
                         and any(r.get("sentAt") for r in _status(o).get("reminders") or []))
    sent = next(r for r in _status(obj)["reminders"] if r.get("sentAt"))
    (mail,) = await wait_for("the reminder email", lambda: _message(sandbox, sent["messageId"]), bool)
    return obj, mail


def show_overdue(say: Narrator, name: str, obj: Mapping[str, Any], mail: ReceivedMessage) -> None:
    say.step(f"{name} is past its due date: Overdue, and its reminder goes out")
    overdue = cond.get(_status(obj).get("conditions"), "Overdue") or {}
    say.ok(f"condition Overdue={overdue.get('status')} ({overdue.get('reason')}): {overdue.get('message')}")
    say.table(["status.reminders[].step", "dueAt", "sentAt", "skipped"],
              [[r["step"], r.get("dueAt") or "", r.get("sentAt") or "", r.get("skipped") or ""]
               for r in _status(obj)["reminders"]])
    say.detail(f"To: {mail.message['To']}", f"Subject: {mail.subject.strip()}")  # a folded header
