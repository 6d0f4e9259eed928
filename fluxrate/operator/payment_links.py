"""What fluxrate sends to Stripe for an invoice's Payment Link, computed as data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fluxrate import money
from fluxrate.models import AfterCompletion, InvoiceSpec


def link_metadata(namespace: str, name: str, uid: str, spec: InvoiceSpec) -> dict[str, str]:
    """Read back by the receiver from ``data.object.metadata`` of every payment event."""
    return {"invoice_id": name, "customer_id": spec.customer.id, "namespace": namespace, "invoice_uid": uid}


def build_payment_link_params(
    namespace: str, name: str, uid: str, spec: InvoiceSpec, after_completion: AfterCompletion
) -> dict[str, Any]:
    currency = spec.currency.lower()
    metadata = link_metadata(namespace, name, uid, spec)
    params: dict[str, Any] = {
        "line_items": [
            {
                "price_data": {
                    "currency": currency,
                    "product_data": {"name": item.description},
                    "unit_amount": money.to_minor(item.unit_amount, spec.currency),
                },
                "quantity": item.quantity,
            }
            for item in spec.line_items
        ],
        # Stripe copies link metadata to Checkout Sessions only; PaymentIntents need their own copy.
        "metadata": metadata,
        "payment_intent_data": {"metadata": dict(metadata)},
        "restrictions": {"completed_sessions": {"limit": 1}},
    }
    if after_completion.type == "redirect" and after_completion.redirect_url:
        params["after_completion"] = {"type": "redirect", "redirect": {"url": after_completion.redirect_url}}
    else:
        confirmation = {"custom_message": after_completion.message} if after_completion.message else {}
        params["after_completion"] = {"type": "hosted_confirmation", "hosted_confirmation": confirmation}
    return params


def payment_link_idempotency_key(uid: str, attempt: int = 1) -> str:
    """One link per invoice and attempt: a retry or restart between creation and the status write replays the same
    link. Attempt 1 is the invoice's first link (the key fluxrate has always used); n > 1 its (n-1)th replacement."""
    return f"fluxrate-payment-link-{uid}" if attempt <= 1 else f"fluxrate-payment-link-{uid}-{attempt}"


def unusable_because(link: Mapping[str, Any]) -> str | None:
    """Why Stripe's payment link object can no longer take a payment, or None if it can."""
    if link.get("active") is False:
        return "it is deactivated"
    completed = (link.get("restrictions") or {}).get("completed_sessions") or {}
    limit, count = completed.get("limit"), completed.get("count")
    if isinstance(limit, int) and isinstance(count, int) and count >= limit:
        return f"its limit of {limit} completed Checkout Session{'s' if limit != 1 else ''} is reached"
    return None
