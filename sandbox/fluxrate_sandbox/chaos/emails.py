"""The email contract under operator kills: at-least-once, with one stable Message-ID per email.

The operator sends three kinds of email, each under a Message-ID fixed by what it is about, and records each send
after the SMTP server accepted it:

- the invoice email, one per payment link: ``<{linkId}.{uid}@fluxrate.invoice>``, recorded in
  ``status.notification`` (``linkId``, ``messageId``, ``sentAt``);
- the receipt, one per payment: ``<receipt.{paymentId}.{uid}@fluxrate.invoice>``, recorded in ``status.receipt``
  (``paymentId``, ``messageId``, ``sentAt``);
- a reminder, one per scheduled step: ``<reminder.{step}.{uid}@fluxrate.invoice>``, recorded in
  ``status.reminders[]`` (``step``, ``messageId``, ``sentAt``).

A SIGKILL between the SMTP server's acceptance and that status write makes the next process send the email again,
with the same Message-ID. So a scenario that kills the operator expects: every email due sent; every email of an
invoice carrying one of the Message-IDs it is due under; and no more extra emails than kills that landed in such a
window, which ``KillWindows`` counts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from fluxrate.operator.email import message_id, reminder_message_id
from fluxrate.operator.receipt_email import receipt_message_id
from fluxrate_sandbox.chaos.outcome import Outcome
from fluxrate_sandbox.chaos.stack import EMAIL_KINDS, Obj, Stack, email_kind, header_id


def recorded_message_ids(status: Mapping[str, Any]) -> set[str]:
    """The Message-IDs an invoice's status records as sent (with ``sentAt``): its current link's email, its
    receipt, its reminders."""
    records = [status.get("notification") or {}, status.get("receipt") or {},
               *(r for r in status.get("reminders") or [] if isinstance(r, Mapping))]
    return {str(r["messageId"]) for r in records if r.get("sentAt") and r.get("messageId")}


class KillWindows:
    """Counts the kills that landed between the SMTP server's acceptance of an email and the status write recording
    it, one per (kill, Message-ID).

    How, and why it is sound: ``after_kill`` runs once the killed process has exited (``FluxrateProcess.kill``
    waits for it), so that process can neither send nor write any more. The emails the SMTP sink accepted since the
    previous kill were all sent by that process (one operator process runs at a time), in the sink's order of
    acceptance; no clock is compared. An email among them whose Message-ID no invoice records as sent in the API
    server's store, read now, was accepted and not recorded: the kill landed in its window. Each such
    (kill, Message-ID) allows one extra email: the next process finds no record and sends again. One kill can land
    in several invoices' windows at once (handlers run concurrently), and counts once for each.

    The records read (``recorded_message_ids``): ``status.notification.messageId``, ``status.receipt.messageId`` and
    each ``status.reminders[].messageId``, each only with its ``sentAt``. Every send is recorded there and a
    reminder or receipt record, once sent, is never rewritten; so an accepted email is missing from them only if
    its record was never written, or (the notification holds the current link's email only) a later link's email
    replaced it. The latter, and a write the API server had received but not yet stored at the read, count a window
    that caused no resend: the allowance can only err by being too generous, never by hiding a resend that has no
    kill behind it.
    """

    def __init__(self, stack: Stack, namespace: str) -> None:
        self.stack = stack
        self.namespace = namespace
        self.count = 0
        self.by_kind: Counter[str] = Counter()
        self._seen = len(stack.sandbox.smtp.messages)

    async def kill_and_restart(self) -> int:
        """SIGKILL the operator, count the windows it died in, start a new process; returns the windows."""
        await self.stack.operator.kill()
        landed = self.after_kill()
        await self.stack.operator.start()
        return landed

    def after_kill(self) -> int:
        messages = self.stack.sandbox.smtp.messages
        landed = self.unrecorded()
        self._seen = len(messages)
        self.count += len(landed)
        self.by_kind.update(email_kind(m) for m in landed)
        return len(landed)

    def unrecorded(self) -> set[str]:
        """The Message-IDs of the emails accepted since the last kill that no invoice records as sent (now)."""
        recorded: set[str] = set()
        for invoice in self.stack.invoices(self.namespace):
            recorded |= recorded_message_ids(invoice.get("status") or {})
        return {header_id(m.message) for m in self.stack.sandbox.smtp.messages[self._seen:]} - recorded


def link_ids(invoice: Obj) -> list[str]:
    """The invoice's payment links, first to current."""
    status = invoice.get("status") or {}
    history = [link["id"] for link in status.get("paymentLinks") or [] if link.get("id")]
    current = (status.get("paymentLink") or {}).get("id")
    return history + ([current] if current and current not in history else [])


def due_message_ids(invoice: Obj, *, receipt: bool = False, reminders: Iterable[str] = ()) -> dict[str, set[str]]:
    """The Message-IDs the invoice's emails are due under, by kind: one per link; its payment's receipt (when it
    has one and ``receipt``: it was Paid while the operator ran); when it has a due date, one per reminder step in
    ``reminders``."""
    uid = invoice["metadata"]["uid"]
    payment = ((invoice.get("status") or {}).get("payment") or {}).get("providerPaymentId")
    dated = bool((invoice.get("spec") or {}).get("dueDate"))
    return {
        "link": {message_id(link, uid) for link in link_ids(invoice)},
        "receipt": {receipt_message_id(str(payment), uid)} if receipt and payment else set(),
        "reminder": {reminder_message_id(step, uid) for step in reminders} if dated else set(),
    }


def email_figures(stack: Stack, invoices: Iterable[Obj], windows: int, outcome: Outcome, *, receipts: bool = False,
                  reminders: Iterable[str] = ()) -> None:
    """The contract's figures and checks for ``invoices`` (their customers' addresses are unique to each): every
    link emailed, and (``receipts``) every recorded payment's receipt, and every reminder step in ``reminders`` of
    each invoice with a due date (``due_message_ids``); each email under the one Message-ID it is due under; extra
    copies no more than ``windows``."""
    invoices, steps = list(invoices), list(reminders)
    wanted_kinds = ["link"] + ["receipt"] * receipts + ["reminder"] * bool(steps)
    by_recipient: dict[str, Counter[str]] = {}
    for m in stack.sandbox.smtp.messages:
        for to in m.rcpt_tos:
            by_recipient.setdefault(to, Counter())[header_id(m.message)] += 1
    emailed: Counter[str] = Counter()
    owed: Counter[str] = Counter()
    right_ids: Counter[str] = Counter()
    sent: Counter[str] = Counter()
    extra: Counter[str] = Counter()
    for invoice in invoices:
        ids = by_recipient.get(invoice["spec"]["customer"]["email"], Counter())
        due = due_message_ids(invoice, receipt=receipts, reminders=steps)
        for kind in EMAIL_KINDS:
            mine = Counter({k: n for k, n in ids.items() if email_kind(k) == kind})
            sent[kind] += sum(mine.values())
            extra[kind] += sum(n - 1 for n in mine.values())
            owed[kind] += bool(due[kind])
            emailed[kind] += bool(due[kind]) and due[kind] <= set(mine)
            right_ids[kind] += set(mine) <= due[kind]
    outcome.figures.update({
        "emails": sum(sum(ids.values()) for ids in by_recipient.values()),
        **{f"emails: {kind}": sent[kind] for kind in wanted_kinds},
        "extra emails (same Message-ID)": sum(extra.values()),
        **{f"extra emails: {kind}": extra[kind] for kind in wanted_kinds if len(wanted_kinds) > 1},
        "kills between SMTP acceptance and status write": windows,
    })
    n = len(invoices)
    outcome.check("every link emailed at least once", emailed["link"] == owed["link"] == n)
    outcome.check("all emails of a link share its one Message-ID", right_ids["link"] == n)
    if receipts:
        outcome.check("every payment's receipt emailed at least once, under <receipt.{paymentId}.{uid}@fluxrate"
                      ".invoice>", emailed["receipt"] == owed["receipt"] > 0)
    if steps:
        outcome.check("every reminder step emailed at least once, under <reminder.{step}.{uid}@fluxrate.invoice>",
                      emailed["reminder"] == owed["reminder"] > 0)
    outcome.check("no receipt or reminder email but those due, each under its one Message-ID",
                  right_ids["receipt"] == n and right_ids["reminder"] == n)
    outcome.check("extra emails no more than kills between SMTP acceptance and status write",
                  sum(extra.values()) <= windows)
