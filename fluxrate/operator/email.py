"""The customer's invoice email: built as data, sent over SMTP with aiosmtplib."""

from __future__ import annotations

import asyncio
import html
from email.message import EmailMessage
from email.utils import formataddr, formatdate
from pathlib import Path

import aiosmtplib

from fluxrate import money
from fluxrate.due_dates import due_text
from fluxrate.models import InvoiceSpec
from fluxrate.operator.settings import SmtpSettings


def message_id(link_id: str, invoice_uid: str) -> str:
    """Deterministic, so a resent email for the same link is recognisable as the same message."""
    return f"<{link_id}.{invoice_uid}@fluxrate.invoice>"


# What the customer is told when a link replaces an earlier one (``status.paymentLink.reason``).
RENEWAL_NOTES = {
    "PaymentFailed": "Your last payment attempt for this invoice did not go through, and the link you used can no "
                     "longer be paid. Nothing was charged for it. Please pay with the new link below.",
    "LinkDeactivated": "The payment link we sent you earlier for this invoice no longer works. Please pay with the "
                       "new link below.",
}


def build_invoice_email(
    *, name: str, uid: str, spec: InvoiceSpec, link_id: str, link_url: str, from_address: str,
    replaces_because: str | None = None,
) -> EmailMessage:
    """The email for one payment link; ``replaces_because`` (a link's reason) when it replaces an earlier one."""
    total = money.format_minor(spec.total_minor(), spec.currency)
    greeting = f"Hello {spec.customer.name}," if spec.customer.name else "Hello,"
    note = RENEWAL_NOTES.get(replaces_because or "", "")
    lines = [
        (item.description, item.quantity,
         money.format_minor(money.to_minor(item.unit_amount, spec.currency) * item.quantity, spec.currency))
        for item in spec.line_items
    ]
    due = f"Due date: {due_text(spec.due_date)}\n" if spec.due_date else ""
    memo = f"\n{spec.memo}\n" if spec.memo else ""
    text = (
        f"{greeting}\n\n" + (f"{note}\n\n" if note else "") + f"Invoice {name} for {total} is ready.\n\n"
        + "".join(f"  {quantity} x {description}: {amount}\n" for description, quantity, amount in lines)
        + f"\nTotal: {total}\n{due}{memo}\nPay securely with Stripe:\n{link_url}\n"
    )
    rows = "".join(
        f"<tr><td>{quantity} x {html.escape(description)}</td>"
        f"<td style='text-align:right'>{html.escape(amount)}</td></tr>"
        for description, quantity, amount in lines
    )
    html_body = (
        f"<html><body><p>{html.escape(greeting)}</p>"
        + (f"<p>{html.escape(note)}</p>" if note else "")
        + f"<p>Invoice <b>{html.escape(name)}</b> for "
        f"<b>{html.escape(total)}</b> is ready.</p><table>{rows}"
        f"<tr><td><b>Total</b></td><td style='text-align:right'><b>{html.escape(total)}</b></td></tr></table>"
        + (f"<p>Due date: {html.escape(due_text(spec.due_date))}</p>" if spec.due_date else "")
        + (f"<p>{html.escape(spec.memo)}</p>" if spec.memo else "")
        + f"<p><a href=\"{html.escape(link_url, quote=True)}\">Pay {html.escape(total)} securely with Stripe</a></p>"
        "</body></html>"
    )
    message = EmailMessage()
    message["From"] = from_address
    message["To"] = formataddr((spec.customer.name or "", spec.customer.email))
    message["Subject"] = f"Invoice {name}: {'new payment link, ' if note else ''}{total} due"
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = message_id(link_id, uid)
    message.set_content(text)
    message.add_alternative(html_body, subtype="html")
    return message


def reminder_message_id(step: str, invoice_uid: str) -> str:
    """One per reminder step of an invoice: a retried or resent reminder is recognisable as the same message."""
    return f"<reminder.{step}.{invoice_uid}@fluxrate.invoice>"


def build_reminder_email(
    *, name: str, uid: str, spec: InvoiceSpec, step: str, link_url: str, from_address: str, due: str,
    days_overdue: int | None,
) -> EmailMessage:
    """A reminder of an unpaid invoice: ``due`` as the customer reads it, ``days_overdue`` None before it is due."""
    total = money.format_minor(spec.total_minor(), spec.currency)
    greeting = f"Hello {spec.customer.name}," if spec.customer.name else "Hello,"
    if days_overdue is None:
        subject = f"Reminder: invoice {name}, {total} due on {due}"
        lead = f"A friendly reminder: invoice {name} for {total} is due on {due}."
    else:
        late = "is now overdue" if days_overdue == 0 else \
            f"is {days_overdue} day{'s' if days_overdue != 1 else ''} overdue"
        subject = f"Overdue: invoice {name}, {total} was due on {due}"
        lead = f"Invoice {name} for {total} was due on {due} and {late}."
    paid = "If you have already paid, thank you, and please ignore this email."
    text = f"{greeting}\n\n{lead}\n\nPay securely with Stripe:\n{link_url}\n\n{paid}\n"
    html_body = (
        f"<html><body><p>{html.escape(greeting)}</p><p>{html.escape(lead)}</p>"
        f"<p><a href=\"{html.escape(link_url, quote=True)}\">Pay {html.escape(total)} securely with Stripe</a></p>"
        f"<p>{html.escape(paid)}</p></body></html>"
    )
    message = EmailMessage()
    message["From"] = from_address
    message["To"] = formataddr((spec.customer.name or "", spec.customer.email))
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = reminder_message_id(step, uid)
    message.set_content(text)
    message.add_alternative(html_body, subtype="html")
    return message


async def send_email(message: EmailMessage, smtp: SmtpSettings) -> None:
    """Raises aiosmtplib.SMTPException (or OSError) on failure; the caller retries with backoff."""
    password = None
    if smtp.password_file:
        password = (await asyncio.to_thread(Path(smtp.password_file).read_text)).strip()
    await aiosmtplib.send(
        message,
        hostname=smtp.host,
        port=smtp.port,
        use_tls=smtp.security == "tls",
        start_tls=True if smtp.security == "starttls" else False,
        username=smtp.username,
        password=password,
        timeout=smtp.timeout,
    )
