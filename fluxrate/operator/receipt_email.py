"""The customer's receipt for a payment: what Stripe says about it (``PaymentDetails``), and the email built as data.

Sent by ``fluxrate.operator.invoices.receipts`` with ``fluxrate.operator.email.send_email``.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formataddr, formatdate
from typing import Any

from fluxrate import money
from fluxrate.models import InvoiceSpec

# Stripe's ``payment_method_details.card.brand`` values, as a customer reads them on a statement.
CARD_BRANDS = {
    "amex": "American Express", "cartes_bancaires": "Cartes Bancaires", "diners": "Diners Club",
    "discover": "Discover", "eftpos_au": "eftpos", "interac": "Interac", "jcb": "JCB", "link": "Link",
    "mastercard": "Mastercard", "unionpay": "UnionPay", "visa": "Visa",
}
WALLETS = {"apple_pay": "Apple Pay", "google_pay": "Google Pay", "samsung_pay": "Samsung Pay", "link": "Link"}
# ``payment_method_details.type`` values that name an account ending in ``last4``.
ACCOUNT_TYPES = {
    "us_bank_account": "US bank account", "sepa_debit": "SEPA Direct Debit account",
    "bacs_debit": "Bacs Direct Debit account", "au_becs_debit": "BECS Direct Debit account",
    "acss_debit": "pre-authorized debit account", "nz_bank_account": "NZ bank account",
}
OTHER_TYPES = {"ideal": "iDEAL", "sofort": "Sofort", "bancontact": "Bancontact", "eps": "EPS", "giropay": "giropay",
               "p24": "Przelewy24", "klarna": "Klarna", "afterpay_clearpay": "Afterpay / Clearpay",
               "affirm": "Affirm", "cashapp": "Cash App Pay", "paypal": "PayPal", "link": "Link",
               "customer_balance": "bank transfer", "alipay": "Alipay", "wechat_pay": "WeChat Pay"}


MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")


@dataclass(frozen=True)
class PaymentDetails:
    """What the receipt says about the payment beyond the invoice's status: both None when Stripe did not say."""

    method: str | None = None  # e.g. "Visa ending 4242", "US bank account ending 6789"
    receipt_url: str | None = None  # Stripe's hosted receipt (the Charge's ``receipt_url``)


def receipt_message_id(payment_id: str, invoice_uid: str) -> str:
    """Deterministic, so a receipt resent for the same payment is recognisable as the same message."""
    return f"<receipt.{payment_id}.{invoice_uid}@fluxrate.invoice>"


def payment_method_text(details: Mapping[str, Any] | None) -> str | None:
    """A Charge's ``payment_method_details`` as the customer knows the method; None when it says nothing usable."""
    if not details or not isinstance(details.get("type"), str):
        return None
    kind = details["type"]
    own = details.get(kind) if isinstance(details.get(kind), Mapping) else {}
    last4 = own.get("last4")
    if kind in ("card", "card_present", "interac_present"):
        brand = CARD_BRANDS.get(str(own.get("brand") or ""), str(own.get("brand") or "Card").title())
        wallet = WALLETS.get(str((own.get("wallet") or {}).get("type") or ""))
        text = f"{brand} ending {last4}" if last4 else brand
        return f"{text} ({wallet})" if wallet else text
    if kind in ACCOUNT_TYPES:
        return f"{ACCOUNT_TYPES[kind]} ending {last4}" if last4 else ACCOUNT_TYPES[kind]
    return OTHER_TYPES.get(kind, kind.replace("_", " "))


def payment_details(intent: Mapping[str, Any]) -> PaymentDetails:
    """From a PaymentIntent retrieved with ``expand[]=latest_charge`` (an unexpanded one says nothing)."""
    charge = intent.get("latest_charge")
    if not isinstance(charge, Mapping):
        return PaymentDetails()
    url = charge.get("receipt_url")
    return PaymentDetails(
        method=payment_method_text(charge.get("payment_method_details")),
        receipt_url=url if isinstance(url, str) and url.startswith("https://") else None,
    )


def paid_on(paid_at: str | None) -> str:
    """``status.payment.paidAt`` as the receipt prints it: ``3 November 2026, 14:05 UTC``."""
    try:
        moment = dt.datetime.fromisoformat(str(paid_at).replace("Z", "+00:00")).astimezone(dt.UTC)
    except ValueError:
        return str(paid_at or "")
    return f"{moment.day} {MONTHS[moment.month - 1]} {moment:%Y, %H:%M} UTC"  # not %B: that follows the locale


def build_receipt_email(
    *, name: str, uid: str, spec: InvoiceSpec, payment: Mapping[str, Any], details: PaymentDetails,
    from_address: str,
) -> EmailMessage:
    """The receipt for ``payment`` (the invoice's ``status.payment``): amount paid, when, how, Stripe's receipt."""
    currency = str(payment.get("currency") or spec.currency)
    amount = money.format_minor(int(payment.get("amountMinor") or 0), currency)
    when = paid_on(payment.get("paidAt"))
    greeting = f"Hello {spec.customer.name}," if spec.customer.name else "Hello,"
    facts = [("Invoice", name), ("Amount paid", amount), ("Date paid", when)]
    if details.method:
        facts.append(("Payment method", details.method))
    text = (
        f"{greeting}\n\nThank you: we received your payment of {amount} for invoice {name}.\n\n"
        + "".join(f"  {label}: {value}\n" for label, value in facts)
        + (f"\nStripe's receipt for this payment:\n{details.receipt_url}\n" if details.receipt_url else "")
    )
    rows = "".join(f"<tr><td>{html.escape(label)}</td><td><b>{html.escape(value)}</b></td></tr>"
                   for label, value in facts)
    html_body = (
        f"<html><body><p>{html.escape(greeting)}</p><p>Thank you: we received your payment of "
        f"<b>{html.escape(amount)}</b> for invoice <b>{html.escape(name)}</b>.</p><table>{rows}</table>"
        + (f"<p><a href=\"{html.escape(details.receipt_url, quote=True)}\">View Stripe's receipt for this "
           "payment</a></p>" if details.receipt_url else "")
        + "</body></html>"
    )
    message = EmailMessage()
    message["From"] = from_address
    message["To"] = formataddr((spec.customer.name or "", spec.customer.email))
    message["Subject"] = f"Receipt for invoice {name}: {amount} paid"
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = receipt_message_id(str(payment.get("providerPaymentId") or ""), uid)
    message.set_content(text)
    message.add_alternative(html_body, subtype="html")
    return message
