"""The email contract under operator kills: at-least-once, with one stable Message-ID per payment link.

The operator emails a link, then records the send (``status.notification``: ``linkId``, ``messageId``, ``sentAt``).
A SIGKILL between the SMTP server's acceptance and that status write makes the next process send the email again,
with the same Message-ID. So a scenario that kills the operator expects: every link emailed; every email of an
invoice carrying its link's Message-ID; and no more extra emails than kills that landed in such a window, which
``KillWindows`` counts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from fluxrate.operator.email import message_id
from fluxrate_sandbox.chaos.outcome import Outcome
from fluxrate_sandbox.chaos.stack import Obj, Stack


class KillWindows:
    """Counts the kills that landed between the SMTP server's acceptance of an email and the status write recording
    it, one per (kill, Message-ID).

    How, and why it is sound: ``after_kill`` runs once the killed process has exited (``FluxrateProcess.kill``
    waits for it), so that process can neither send nor write any more. The emails the SMTP sink accepted since the
    previous kill were all sent by that process (one operator process runs at a time), in the sink's order of
    acceptance; no clock is compared. An email among them whose Message-ID no invoice records
    (``status.notification.messageId`` with ``sentAt``) in the API server's store, read now, was accepted and not
    recorded: the kill landed in its window. Each such (kill, Message-ID) allows one extra email: the next process
    finds no record and sends again. One kill can land in several invoices' windows at once (handlers run
    concurrently), and counts once for each. A write the API server had received but not yet stored at the read
    would count a window that caused no resend: the allowance can only err by being one too generous, never by
    hiding a resend that has no kill behind it.
    """

    def __init__(self, stack: Stack, namespace: str) -> None:
        self.stack = stack
        self.namespace = namespace
        self.count = 0
        self._seen = len(stack.sandbox.smtp.messages)

    async def kill_and_restart(self) -> int:
        """SIGKILL the operator, count the windows it died in, start a new process; returns the windows."""
        await self.stack.operator.kill()
        landed = self.after_kill()
        await self.stack.operator.start()
        return landed

    def after_kill(self) -> int:
        messages = self.stack.sandbox.smtp.messages
        accepted = {str(m.message["Message-ID"]) for m in messages[self._seen:]}
        self._seen = len(messages)
        recorded = {str(n.get("messageId")) for i in self.stack.invoices(self.namespace)
                    if (n := (i.get("status") or {}).get("notification") or {}).get("sentAt")}
        landed = len(accepted - recorded)
        self.count += landed
        return landed


def link_ids(invoice: Obj) -> list[str]:
    """The invoice's payment links, first to current."""
    status = invoice.get("status") or {}
    history = [link["id"] for link in status.get("paymentLinks") or [] if link.get("id")]
    current = (status.get("paymentLink") or {}).get("id")
    return history + ([current] if current and current not in history else [])


def email_figures(stack: Stack, invoices: Iterable[Obj], windows: int, outcome: Outcome) -> None:
    """The contract's figures and checks for ``invoices`` (their customers' addresses are unique to each)."""
    invoices = list(invoices)
    by_recipient: dict[str, Counter[str]] = {}
    for m in stack.sandbox.smtp.messages:
        for to in m.rcpt_tos:
            by_recipient.setdefault(to, Counter())[str(m.message["Message-ID"])] += 1
    emailed_every_link, one_id_per_link, extra = 0, 0, 0
    for invoice in invoices:
        ids = by_recipient.get(invoice["spec"]["customer"]["email"], Counter())
        expected = {message_id(link, invoice["metadata"]["uid"]) for link in link_ids(invoice)}
        emailed_every_link += bool(expected) and expected <= set(ids)
        one_id_per_link += set(ids) <= expected
        extra += sum(n - 1 for n in ids.values())
    outcome.figures.update({
        "emails": sum(sum(ids.values()) for ids in by_recipient.values()),
        "extra emails (same Message-ID)": extra,
        "kills between SMTP acceptance and status write": windows,
    })
    outcome.check("every link emailed at least once", emailed_every_link == len(invoices))
    outcome.check("all emails of a link share its one Message-ID", one_id_per_link == len(invoices))
    outcome.check("extra emails no more than kills between SMTP acceptance and status write", extra <= windows)
