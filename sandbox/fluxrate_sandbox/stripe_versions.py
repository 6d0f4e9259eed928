"""API versions in the Stripe stand-in: events rendered in each endpoint's version, and the invoice a Payment Link
with ``invoice_creation`` makes (``invoice.payment_succeeded`` / ``invoice.payment_failed`` / ``invoice_payment.paid``).

The stand-in keeps its objects in the shape of current API versions (2025-03-31.basil and later: an invoice's
payments are InvoicePayment objects, ``invoice.payment_intent`` is gone). ``VersionRenderer.render`` gives an
event as an endpoint of another version receives it: Stripe renders each event in the endpoint's ``api_version``,
else in the account's default version (the version the event was created with).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fluxrate_sandbox.stripe_objects import (
    StripeError,
    fill,
    get_bool,
    get_dict,
    invoice_creation_defaults,
    invoice_defaults,
    invoice_line,
    new_id,
)

BASIL = "2025-03-31.basil"  # invoice.payment_intent / charge / paid removed; InvoicePayment objects
PI_CHARGES_REMOVED = "2022-11-15"  # payment_intent.charges removed (latest_charge stays); charge.refunds no
# longer included unless expanded


def _date(version: str | None) -> str:
    return (version or "")[:10]


def before(version: str | None, boundary: str) -> bool:
    """Whether ``version`` predates ``boundary`` (versions compare by their date)."""
    return bool(version) and _date(version) < _date(boundary)


class VersionRenderer:
    """Renders stand-in events per endpoint version; remembers what older versions show that newer ones don't."""

    def __init__(self) -> None:
        self.invoice_payment_intents: dict[str, str] = {}  # in_ -> pi_ (pre-basil invoice.payment_intent)
        self.intent_charges: dict[str, dict[str, Any]] = {}  # pi_ -> its charge (pre-2022-11-15 charges list)
        self.charge_refunds: dict[str, list[dict[str, Any]]] = {}  # ch_ -> its refunds, newest first (same)

    def render(self, event: Mapping[str, Any], endpoint_version: str | None) -> dict[str, Any]:
        """``event`` as an endpoint of ``endpoint_version`` (None: the account default it was made in) gets it."""
        version = endpoint_version or event.get("api_version")
        rendered = copy.deepcopy(dict(event))
        rendered["api_version"] = version
        obj = (rendered.get("data") or {}).get("object")
        if isinstance(obj, dict):
            kind = obj.get("object")
            if kind == "invoice" and before(version, BASIL):
                self._legacy_invoice(obj)
            elif kind == "payment_intent" and before(version, PI_CHARGES_REMOVED):
                charge = self.intent_charges.get(str(obj.get("id")))
                obj["charges"] = {"object": "list", "data": [charge] if charge else [], "has_more": False,
                                  "total_count": 1 if charge else 0, "url": f"/v1/charges?payment_intent={obj['id']}"}
            elif kind == "charge" and before(version, PI_CHARGES_REMOVED):  # charge.refunds was always included
                refunds = self.charge_refunds.get(str(obj.get("id")), [])
                obj["refunds"] = {"object": "list", "data": copy.deepcopy(refunds), "has_more": False,
                                  "total_count": len(refunds), "url": f"/v1/charges/{obj['id']}/refunds"}
        return rendered

    def _legacy_invoice(self, invoice: dict[str, Any]) -> None:
        pi = self.invoice_payment_intents.get(str(invoice.get("id")))
        invoice.pop("parent", None)
        invoice.pop("payments", None)
        invoice.pop("confirmation_secret", None)
        invoice["payment_intent"] = pi
        invoice["charge"] = None
        invoice["paid"] = invoice.get("status") == "paid"
        invoice["subscription"] = None


def apply_invoice_creation(params: Mapping[str, Any], link: dict[str, Any]) -> None:
    """``invoice_creation`` of a Payment Link create/update: ``enabled`` and ``invoice_data.metadata``."""
    if "invoice_creation" not in params:
        return
    given = get_dict(params, "invoice_creation", "invoice_creation") or {}
    enabled = get_bool(given, "enabled", "invoice_creation[enabled]")
    if enabled is None:
        raise StripeError(400, "Missing required param: invoice_creation[enabled].", code="parameter_missing",
                          param="invoice_creation[enabled]")
    current = copy.deepcopy(link.get("invoice_creation") or invoice_creation_defaults())
    data = {**invoice_creation_defaults()["invoice_data"], **(current.get("invoice_data") or {})}
    given_data = get_dict(given, "invoice_data", "invoice_creation[invoice_data]") or {}
    if "metadata" in given_data:
        metadata = given_data["metadata"]
        if not isinstance(metadata, Mapping):
            raise StripeError(400, "Invalid hash", param="invoice_creation[invoice_data][metadata]")
        data["metadata"] = {str(k): str(v) for k, v in metadata.items() if v not in ("", None)}
    link["invoice_creation"] = {**current, "enabled": enabled, "invoice_data": data}


def creates_invoice(link: Mapping[str, Any]) -> bool:
    return bool((link.get("invoice_creation") or {}).get("enabled"))


def prepare_invoice(
    link: Mapping[str, Any], session: dict[str, Any], pi: dict[str, Any] | None = None, *, completes: bool
) -> None:
    """A session of an ``invoice_creation`` link that completes names its invoice (``session.invoice``), and its
    Customer: an invoice needs one, so Checkout creates it (``customer_creation: if_required``) for the session and
    its PaymentIntent."""
    if completes and creates_invoice(link):
        session["invoice"] = new_id("in", 24)
        session["customer"] = session.get("customer") or new_id("cus", 14)
        if pi is not None:
            pi["customer"] = session["customer"]


def add_invoice_events(
    phases: list[list[dict[str, Any]]], link: Mapping[str, Any], session: dict[str, Any], pi: Mapping[str, Any],
    renderer: VersionRenderer, ev: Callable[[str, dict[str, Any]], dict[str, Any]],
    line_items: Sequence[Mapping[str, Any]] = (),
) -> None:
    """Append the invoice's payment events to the phase that settles the payment (the last one)."""
    if not session.get("invoice") or not phases:
        return
    status = pi.get("status")
    paid = True if status == "succeeded" else False if status == "requires_payment_method" else None
    _, events = invoice_events(link, session, pi, renderer, ev, paid=paid, line_items=line_items)
    phases[-1].extend(events)


def invoice_events(
    link: Mapping[str, Any], session: dict[str, Any], pi: Mapping[str, Any], renderer: VersionRenderer,
    ev: Callable[[str, dict[str, Any]], dict[str, Any]], *, paid: bool | None,
    line_items: Sequence[Mapping[str, Any]] = (),
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The invoice a completed Checkout Session of an ``invoice_creation`` link makes, and its payment events.

    ``paid``: True → ``invoice.payment_succeeded`` and ``invoice_payment.paid``; False → ``invoice.payment_failed``;
    None → no event yet (a delayed payment still processing). Sets ``session["invoice"]``. ``line_items``:
    the link's (``item`` objects), which become the invoice's lines.
    """
    invoice_id = session.get("invoice") or new_id("in", 24)
    session["invoice"] = invoice_id
    renderer.invoice_payment_intents[invoice_id] = str(pi["id"])
    if pi.get("latest_charge"):
        renderer.intent_charges.setdefault(str(pi["id"]), {"id": pi["latest_charge"], "object": "charge",
                                                           "amount": pi["amount"], "currency": pi["currency"],
                                                           "payment_intent": pi["id"], "status": "succeeded"})
    amount = int(session.get("amount_total") or 0)
    invoice_data = (link.get("invoice_creation") or {}).get("invoice_data") or {}
    metadata = dict(invoice_data.get("metadata") or {})
    created = int(session.get("created") or 0)
    livemode = bool(session.get("livemode"))
    session["customer"] = session.get("customer") or new_id("cus", 14)
    lines = [invoice_line(item, invoice_id=invoice_id, period=created, livemode=livemode) for item in line_items]
    invoice: dict[str, Any] = {
        "id": invoice_id,
        "object": "invoice",
        "amount_due": amount,
        "amount_paid": amount if paid else 0,
        "amount_remaining": 0 if paid else amount,
        "attempt_count": 1,
        "attempted": True,
        "billing_reason": "manual",
        "collection_method": "charge_automatically",
        "created": created,
        "currency": session.get("currency"),
        "customer": session["customer"],
        "lines": {"object": "list", "data": lines, "has_more": False, "url": f"/v1/invoices/{invoice_id}/lines"},
        "livemode": livemode,
        "metadata": metadata,
        "parent": None,
        "status": "paid" if paid else "open",
        "status_transitions": {"finalized_at": created, "marked_uncollectible_at": None,
                               "paid_at": created if paid else None, "voided_at": None},
        "subtotal": int(session.get("amount_subtotal") or amount),
        "subtotal_excluding_tax": int(session.get("amount_subtotal") or amount),
        "total": amount,
        "total_excluding_tax": amount,
    }
    fill(invoice, invoice_defaults(invoice_data, session))
    if paid is None:
        return invoice, []
    if not paid:
        return invoice, [ev("invoice.payment_failed", invoice)]
    invoice_payment = {
        "id": new_id("inpay", 24),
        "object": "invoice_payment",
        "amount_paid": amount,
        "amount_requested": amount,
        "created": created,
        "currency": session.get("currency"),
        "invoice": invoice_id,
        "is_default": True,
        "livemode": livemode,
        "payment": {"type": "payment_intent", "payment_intent": pi["id"]},
        "status": "paid",
        "status_transitions": {"canceled_at": None, "paid_at": created},
    }
    return invoice, [ev("invoice.payment_succeeded", invoice), ev("invoice_payment.paid", invoice_payment)]
