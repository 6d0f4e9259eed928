"""Payment link params -> Stripe objects (validation mirrors Stripe's answers for the params we model)."""

from __future__ import annotations

import re
import time
from typing import Any

from fluxrate_sandbox.stripe_objects import (
    MINIMUM_CHARGE,
    SUPPORTED_CURRENCIES,
    StripeError,
    apply_metadata,
    check_unknown,
    format_minimum,
    get_bool,
    get_dict,
    get_int,
    get_list,
    get_str,
    missing,
    new_id,
    price_object,
)

MAX_AMOUNT = 99_999_999

CREATE_PARAMS = {
    "line_items", "metadata", "payment_intent_data", "restrictions", "after_completion", "expand",
    "currency", "allow_promotion_codes", "billing_address_collection", "customer_creation", "submit_type",
    "payment_method_types", "phone_number_collection", "tax_id_collection", "automatic_tax", "custom_text",
    "custom_fields", "inactive_message", "invoice_creation", "consent_collection",
    "shipping_address_collection", "shipping_options", "payment_method_collection", "optional_items",
    "name_collection", "on_behalf_of", "application_fee_amount", "application_fee_percent",
    "transfer_data", "subscription_data",
}
UPDATE_PARAMS = {
    "active", "metadata", "after_completion", "restrictions", "inactive_message", "payment_intent_data",
    "expand", "allow_promotion_codes", "billing_address_collection", "customer_creation", "submit_type",
    "custom_text", "custom_fields", "automatic_tax", "invoice_creation", "payment_method_types",
    "phone_number_collection", "tax_id_collection", "shipping_address_collection", "line_items",
    "name_collection", "optional_items", "payment_method_collection", "subscription_data",
}
PI_DATA_PARAMS = {
    "metadata", "description", "capture_method", "setup_future_usage", "statement_descriptor",
    "statement_descriptor_suffix", "transfer_group",
}
_URL = re.compile(r"^https?://[^\s/$.?#][^\s]*$", re.IGNORECASE)


def parse_line_items(
    params: dict[str, Any], *, livemode: bool = False
) -> tuple[list[dict[str, Any]], str, int]:
    """Validate ``line_items``; return (line item objects, currency, total in minor units)."""
    created = int(time.time())
    items = get_list(params, "line_items", "line_items")
    if not items:
        raise missing("line_items")
    if len(items) > 20:
        raise StripeError(400, "A payment link can have at most 20 line items.", param="line_items")
    result: list[dict[str, Any]] = []
    currency: str | None = None
    total = 0
    for index, item in enumerate(items):
        p = f"line_items[{index}]"
        if not isinstance(item, dict):
            raise StripeError(400, f"Invalid object: {p} must be a hash", param=p)
        check_unknown(item, {"price", "price_data", "quantity", "adjustable_quantity"}, p)
        price_id = get_str(item, "price", f"{p}[price]")
        if price_id is not None:
            raise StripeError(
                400, f"No such price: '{price_id}'", code="resource_missing", param=f"{p}[price]"
            )
        price_data = get_dict(item, "price_data", f"{p}[price_data]")
        if price_data is None:
            raise missing(f"{p}[price]")
        pd = f"{p}[price_data]"
        check_unknown(
            price_data,
            {"currency", "product", "product_data", "unit_amount", "unit_amount_decimal", "tax_behavior",
             "recurring"},
            pd,
        )
        if "recurring" in price_data:
            raise StripeError(
                400, "The Stripe stand-in models one-time prices only.", param=f"{pd}[recurring]"
            )
        cur = get_str(price_data, "currency", f"{pd}[currency]", required=True)
        assert cur is not None
        cur = cur.lower()
        if cur not in SUPPORTED_CURRENCIES:
            raise StripeError(
                400,
                f"Invalid currency: {cur}. Stripe currently supports these currencies: "
                + ", ".join(sorted(SUPPORTED_CURRENCIES)),
                param=f"{pd}[currency]",
            )
        if currency is not None and cur != currency:
            raise StripeError(
                400, "All prices on a payment link must have the same currency.", param=f"{pd}[currency]"
            )
        currency = cur
        product_id = get_str(price_data, "product", f"{pd}[product]")
        if product_id is not None:
            raise StripeError(
                400, f"No such product: '{product_id}'", code="resource_missing", param=f"{pd}[product]"
            )
        product_data = get_dict(price_data, "product_data", f"{pd}[product_data]")
        if product_data is None:
            raise missing(f"{pd}[product_data]")
        check_unknown(
            product_data,
            {"name", "description", "images", "metadata", "tax_code", "unit_label"},
            f"{pd}[product_data]",
        )
        name = get_str(product_data, "name", f"{pd}[product_data][name]", required=True)
        unit_amount = get_int(
            price_data, "unit_amount", f"{pd}[unit_amount]", required=True, minimum=0, maximum=MAX_AMOUNT
        )
        quantity = get_int(item, "quantity", f"{p}[quantity]", required=True, minimum=1, maximum=999_999)
        assert unit_amount is not None and quantity is not None
        amount = unit_amount * quantity
        total += amount
        product_id = new_id("prod", 14)
        result.append(
            {
                "id": new_id("li", 24),
                "object": "item",
                "adjustable_quantity": None,
                "amount_discount": 0,
                "amount_subtotal": amount,
                "amount_tax": 0,
                "amount_total": amount,
                "currency": cur,
                "description": name,
                "metadata": {},
                "price": price_object(new_id("price", 24), product_id, cur, unit_amount, livemode=livemode,
                                      created=created),
                "quantity": quantity,
            }
        )
    assert currency is not None
    minimum = MINIMUM_CHARGE.get(currency)
    if minimum is not None and total < minimum:
        raise StripeError(
            400,
            f"The Checkout Session's total amount due must add up to at least {format_minimum(currency)}",
            code="amount_too_small",
            param="line_items",
        )
    if total > MAX_AMOUNT:
        raise StripeError(
            400,
            f"The total amount due must be no more than {MAX_AMOUNT} in minor units of {currency}.",
            code="amount_too_large",
            param="line_items",
        )
    return result, currency, total


def parse_payment_intent_data(params: dict[str, Any], current: dict[str, Any] | None) -> dict[str, Any] | None:
    pid = get_dict(params, "payment_intent_data", "payment_intent_data")
    if pid is None:
        return current
    check_unknown(pid, PI_DATA_PARAMS, "payment_intent_data")
    base = dict(current) if current else {
        "capture_method": "automatic",
        "description": None,
        "metadata": {},
        "setup_future_usage": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "transfer_group": None,
    }
    base["metadata"] = apply_metadata(
        dict(base.get("metadata") or {}), pid.get("metadata"), "payment_intent_data[metadata]"
    )
    capture = get_str(pid, "capture_method", "payment_intent_data[capture_method]")
    if capture is not None:
        if capture not in {"automatic", "automatic_async", "manual"}:
            raise StripeError(
                400, f"Invalid capture_method: {capture}", param="payment_intent_data[capture_method]"
            )
        base["capture_method"] = capture
    for key in ("description", "statement_descriptor", "statement_descriptor_suffix", "transfer_group",
                "setup_future_usage"):
        value = get_str(pid, key, f"payment_intent_data[{key}]")
        if value is not None:
            base[key] = value or None
    return base


def parse_restrictions(params: dict[str, Any], current: dict[str, Any] | None) -> dict[str, Any] | None:
    if params.get("restrictions") == "":
        return None
    restrictions = get_dict(params, "restrictions", "restrictions")
    if restrictions is None:
        return current
    check_unknown(restrictions, {"completed_sessions"}, "restrictions")
    cs = get_dict(restrictions, "completed_sessions", "restrictions[completed_sessions]")
    if cs is None:
        raise missing("restrictions[completed_sessions]")
    limit = get_int(
        cs, "limit", "restrictions[completed_sessions][limit]", required=True, minimum=1, maximum=10_000
    )
    count = (current or {}).get("completed_sessions", {}).get("count", 0)
    return {"completed_sessions": {"count": count, "limit": limit}}


def parse_after_completion(params: dict[str, Any], current: dict[str, Any] | None) -> dict[str, Any]:
    default = {"type": "hosted_confirmation", "hosted_confirmation": {"custom_message": None}}
    ac = get_dict(params, "after_completion", "after_completion")
    if ac is None:
        return current or default
    check_unknown(ac, {"type", "redirect", "hosted_confirmation"}, "after_completion")
    kind = get_str(ac, "type", "after_completion[type]", required=True)
    if kind == "redirect":
        redirect = get_dict(ac, "redirect", "after_completion[redirect]")
        if redirect is None:
            raise missing("after_completion[redirect]")
        url = get_str(redirect, "url", "after_completion[redirect][url]", required=True)
        assert url is not None
        if not _URL.match(url):
            raise StripeError(400, "Not a valid URL", code="url_invalid", param="after_completion[redirect][url]")
        return {"type": "redirect", "redirect": {"url": url}}
    if kind == "hosted_confirmation":
        hc = get_dict(ac, "hosted_confirmation", "after_completion[hosted_confirmation]") or {}
        message = get_str(hc, "custom_message", "after_completion[hosted_confirmation][custom_message]")
        return {"type": "hosted_confirmation", "hosted_confirmation": {"custom_message": message or None}}
    raise StripeError(
        400,
        f"Invalid after_completion[type]: must be one of redirect or hosted_confirmation (got {kind!r})",
        param="after_completion[type]",
    )


def apply_simple_settings(params: dict[str, Any], obj: dict[str, Any]) -> None:
    allow = get_bool(params, "allow_promotion_codes", "allow_promotion_codes")
    if allow is not None:
        obj["allow_promotion_codes"] = allow
    for key, choices in (
        ("billing_address_collection", {"auto", "required"}),
        ("customer_creation", {"always", "if_required"}),
        ("submit_type", {"auto", "book", "donate", "pay", "subscribe"}),
    ):
        value = get_str(params, key, key)
        if value is not None:
            if value not in choices:
                raise StripeError(400, f"Invalid {key}: must be one of {', '.join(sorted(choices))}", param=key)
            obj[key] = value
    if "inactive_message" in params:
        obj["inactive_message"] = get_str(params, "inactive_message", "inactive_message") or None
