"""Building blocks of the Stripe stand-in: ids, Stripe's form encoding, error bodies, param validation."""

from __future__ import annotations

import json
import re
import secrets
import string
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from fluxrate.money import THREE_DECIMAL_CURRENCIES, ZERO_DECIMAL_CURRENCIES

DOCS = "https://stripe.com/docs/error-codes"

_ALNUM = string.ascii_letters + string.digits

try:  # the API version the SDK pins; events and endpoints report it like Stripe does
    from stripe._api_version import _ApiVersion

    DEFAULT_API_VERSION: str = _ApiVersion.CURRENT
except ImportError:  # pragma: no cover - older/newer SDK layouts
    DEFAULT_API_VERSION = "2026-10-28.endive"


def new_id(prefix: str, length: int = 24) -> str:
    return f"{prefix}_{''.join(secrets.choice(_ALNUM) for _ in range(length))}"


def mask_key(key: str) -> str:
    """Mask a secret key the way Stripe's 401 message does: keep the prefix and the last 4 characters."""
    match = re.match(r"^((?:sk|rk|pk)_(?:test|live)_)(.*)$", key)
    prefix, rest = (match.group(1), match.group(2)) if match else ("", key)
    if len(rest) <= 4:
        return prefix + rest
    return prefix + "*" * (len(rest) - 4) + rest[-4:]


def key_livemode(key: str) -> bool:
    return key.startswith(("sk_live_", "rk_live_"))


def valid_key_format(key: str) -> bool:
    return re.fullmatch(r"(?:sk|rk)_(?:test|live)_[A-Za-z0-9]+", key) is not None


class StripeError(Exception):
    """An error answered with Stripe's body shape ``{"error": {...}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        should_retry: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.should_retry = should_retry

    def body(self, request_id: str) -> dict[str, Any]:
        err: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code is not None:
            err["code"] = self.code
            err["doc_url"] = f"{DOCS}#{self.code.replace('_', '-')}"
        if self.param is not None:
            err["param"] = self.param
        err["request_log_url"] = f"https://dashboard.stripe.com/test/logs/{request_id}"
        return {"error": err}


def missing(param: str) -> StripeError:
    return StripeError(400, f"Missing required param: {param}.", code="parameter_missing", param=param)


def unknown(param: str) -> StripeError:
    return StripeError(400, f"Received unknown parameter: {param}", code="parameter_unknown", param=param)


def not_found(kind: str, object_id: str, param: str = "id") -> StripeError:
    return StripeError(404, f"No such {kind}: '{object_id}'", code="resource_missing", param=param)


# ---------------------------------------------------------------------------------------------------
# Form decoding: `line_items[0][price_data][currency]=usd` -> {"line_items": [{"price_data": {...}}]}


def decode_form(body: str) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for raw_key, value in parse_qsl(body, keep_blank_values=True):
        parts = _split_key(raw_key)
        node = root
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        leaf = parts[-1]
        if leaf == "" and isinstance(node, dict):  # `expand[]=x` style
            leaf = str(len(node))
        node[leaf] = value
    return _listify(root, parent=None)


def _split_key(key: str) -> list[str]:
    head, _, rest = key.partition("[")
    parts = [head]
    if rest:
        parts.extend(re.findall(r"([^\[\]]*)\]", "[" + rest))
    return parts


def _listify(node: Any, parent: str | None) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {k: _listify(v, k) for k, v in node.items()}
    if parent != "metadata" and converted and all(k.isdigit() for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted


# ---------------------------------------------------------------------------------------------------
# Typed accessors that fail like Stripe.


def get_str(params: Mapping[str, Any], key: str, param: str, *, required: bool = False) -> str | None:
    value = params.get(key)
    if value is None:
        if required:
            raise missing(param)
        return None
    if not isinstance(value, str):
        raise StripeError(400, f"Invalid string: {value!r}", param=param)
    if required and value == "":
        raise StripeError(
            400,
            f"You passed an empty string for '{param}'. We assume empty values are an attempt to unset a "
            "parameter; however '{param}' cannot be unset. You should remove '{param}' from your request "
            "or supply a non-empty value.",
            code="parameter_invalid_empty",
            param=param,
        )
    return value


def get_int(
    params: Mapping[str, Any],
    key: str,
    param: str,
    *,
    required: bool = False,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int | None:
    value = params.get(key)
    if value is None:
        if required:
            raise missing(param)
        return None
    if not isinstance(value, str) or not re.fullmatch(r"-?\d+", value):
        raise StripeError(400, f"Invalid integer: {value}", code="parameter_invalid_integer", param=param)
    number = int(value)
    if minimum is not None and number < minimum:
        raise StripeError(
            400,
            f"This value must be greater than or equal to {minimum}.",
            code="parameter_invalid_integer",
            param=param,
        )
    if maximum is not None and number > maximum:
        raise StripeError(
            400,
            f"This value must be less than or equal to {maximum}.",
            code="parameter_invalid_integer",
            param=param,
        )
    return number


def get_bool(params: Mapping[str, Any], key: str, param: str) -> bool | None:
    value = params.get(key)
    if value is None:
        return None
    if value == "true":
        return True
    if value == "false":
        return False
    raise StripeError(400, f"Invalid boolean: {value}", param=param)


def get_dict(params: Mapping[str, Any], key: str, param: str) -> dict[str, Any] | None:
    value = params.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, dict):
        raise StripeError(
            400, f"Invalid object: {param} must be a hash", param=param
        )
    return value


def get_list(params: Mapping[str, Any], key: str, param: str) -> list[Any] | None:
    value = params.get(key)
    if value is None:
        return None
    if isinstance(value, dict) and not value:
        return []
    if not isinstance(value, list):
        raise StripeError(400, f"Invalid array: {param} must be an array", param=param)
    return value


def check_unknown(params: Mapping[str, Any], allowed: set[str], prefix: str = "") -> None:
    for key in params:
        if key not in allowed:
            raise unknown(f"{prefix}[{key}]" if prefix else key)


def apply_metadata(current: dict[str, str], update: Any, param: str = "metadata") -> dict[str, str]:
    """Merge ``metadata`` like Stripe: values replace, empty string unsets a key, ``metadata=""`` clears."""
    if update is None:
        return current
    if update == "":
        return {}
    if not isinstance(update, dict):
        raise StripeError(400, "Invalid hash", param=param)
    merged = dict(current)
    for key, value in update.items():
        if not isinstance(value, str):
            raise StripeError(400, f"Invalid value for metadata key {key}", param=f"{param}[{key}]")
        if len(key) > 40:
            raise StripeError(
                400,
                f"Metadata keys can have up to 40 characters, but you passed in a key with {len(key)} "
                "characters.",
                param=f"{param}[{key}]",
            )
        if len(value) > 500:
            raise StripeError(
                400,
                f"Metadata values can have up to 500 characters, but you passed in a value that is "
                f"{len(value)} characters.",
                param=f"{param}[{key}]",
            )
        if value == "":
            merged.pop(key, None)
        else:
            merged[key] = value
    if len(merged) > 50:
        raise StripeError(400, "Metadata can have up to 50 keys.", param=param)
    return merged


# ---------------------------------------------------------------------------------------------------
# Currencies. Minimum charge amounts (minor units) per Stripe's published table; amounts are always ints.

MINIMUM_CHARGE: dict[str, int] = {
    "usd": 50,
    "aed": 200,
    "aud": 50,
    "bgn": 100,
    "brl": 50,
    "cad": 50,
    "chf": 50,
    "czk": 1500,
    "dkk": 250,
    "eur": 50,
    "gbp": 30,
    "hkd": 400,
    "huf": 17500,
    "inr": 50,
    "jpy": 50,
    "mxn": 1000,
    "myr": 200,
    "nok": 300,
    "nzd": 50,
    "pln": 200,
    "ron": 200,
    "sek": 300,
    "sgd": 50,
    "thb": 1000,
}

# Stripe's currency exponents are one fact, kept in fluxrate.money.
ZERO_DECIMAL = {c.lower() for c in ZERO_DECIMAL_CURRENCIES}

SUPPORTED_CURRENCIES: set[str] = set(MINIMUM_CHARGE) | ZERO_DECIMAL | {c.lower() for c in THREE_DECIMAL_CURRENCIES} | {
    "cny", "idr", "ils", "isk", "kes", "ngn", "php", "pkr", "sar", "try", "twd", "uah", "zar", "egp",
    "ars", "cop", "pen", "uyu", "qar", "kzt", "mad", "lkr", "bdt",
}


def format_minimum(currency: str) -> str:
    amount = MINIMUM_CHARGE[currency]
    if currency in ZERO_DECIMAL:
        return f"{amount} {currency}"
    symbol = {"usd": "$", "eur": "€", "gbp": "£", "cad": "$", "aud": "$"}.get(currency, "")
    return f"{symbol}{amount // 100}.{amount % 100:02d} {currency}"


# ---------------------------------------------------------------------------------------------------
# Event types accepted in `enabled_events` (a subset of Stripe's list; enough for payment flows).

EVENT_TYPES: set[str] = {
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
    "checkout.session.expired",
    "payment_intent.created",
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.processing",
    "payment_intent.canceled",
    "payment_intent.requires_action",
    "payment_link.created",
    "payment_link.updated",
    "charge.succeeded",
    "charge.failed",
    "charge.refunded",
    "charge.refund.updated",
    "charge.dispute.created",
    "charge.dispute.updated",
    "charge.dispute.closed",
    "charge.dispute.funds_withdrawn",
    "charge.dispute.funds_reinstated",
    "refund.created",
    "refund.updated",
    "refund.failed",
    "invoice.paid",
    "invoice.payment_succeeded",
    "invoice.payment_failed",
    "invoice.finalized",
    "invoice_payment.paid",
    "customer.created",
    "customer.updated",
    "account.updated",
    "account.application.deauthorized",
}


# ---------------------------------------------------------------------------------------------------
# The fields Stripe always sends, as it sends them for what the stand-in models (a Payment Link with one-time
# prices, its Checkout Sessions and PaymentIntents, a standard account). Held to Stripe's OpenAPI description by
# tests/stripe_openapi: a field Stripe always sends is here, a field Stripe doesn't have is not.


def fill(obj: dict[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Add the fields ``obj`` lacks, in place (``obj`` may already be shared), and return it."""
    for key, value in defaults.items():
        obj.setdefault(key, value)
    return obj


def _custom_text() -> dict[str, Any]:
    return {"after_submit": None, "shipping_address": None, "submit": None, "terms_of_service_acceptance": None}


def invoice_creation_defaults() -> dict[str, Any]:
    return {
        "enabled": False,
        "invoice_data": {
            "account_tax_ids": None, "custom_fields": None, "description": None, "footer": None,
            "issuer": {"type": "self"}, "metadata": {}, "rendering_options": None,
        },
    }


def payment_link_defaults() -> dict[str, Any]:
    """A Payment Link's fields that fluxrate's params leave at Stripe's defaults."""
    return {
        "allow_promotion_codes": False,
        "application": None,
        "application_fee_amount": None,
        "application_fee_percent": None,
        "automatic_tax": {"enabled": False, "liability": None},
        "billing_address_collection": "auto",
        "consent_collection": None,
        "custom_fields": [],
        "custom_text": _custom_text(),
        "customer_creation": "if_required",
        "inactive_message": None,
        "invoice_creation": invoice_creation_defaults(),
        "managed_payments": None,
        "on_behalf_of": None,
        "optional_items": None,
        "payment_intent_data": None,
        "payment_method_collection": "always",
        "payment_method_options": None,
        "payment_method_types": None,
        "phone_number_collection": {"enabled": False},
        "restrictions": None,
        "shipping_address_collection": None,
        "shipping_options": [],
        "submit_type": "auto",
        "subscription_data": None,
        "tax_id_collection": {"enabled": False, "required": "never"},
        "transfer_data": None,
    }


def price_object(price_id: str, product_id: str, currency: str, unit_amount: int, *, livemode: bool,
                 created: int) -> dict[str, Any]:
    """The inline (``price_data``) one-time price of a line item: Stripe creates it inactive."""
    return {
        "id": price_id,
        "object": "price",
        "active": False,
        "billing_scheme": "per_unit",
        "created": created,
        "currency": currency,
        "custom_unit_amount": None,
        "livemode": livemode,
        "lookup_key": None,
        "metadata": {},
        "nickname": None,
        "product": product_id,
        "recurring": None,
        "tax_behavior": "unspecified",
        "tiers_mode": None,
        "transform_quantity": None,
        "type": "one_time",
        "unit_amount": unit_amount,
        "unit_amount_decimal": str(unit_amount),
    }


def checkout_session_defaults(link: Mapping[str, Any]) -> dict[str, Any]:
    """A payment-mode Checkout Session of a Payment Link: the link's settings, Stripe's defaults for the rest."""
    return {
        "adaptive_pricing": {"enabled": False},
        "after_expiration": None,
        "allow_promotion_codes": link.get("allow_promotion_codes", False),
        "automatic_tax": {"enabled": False, "liability": None, "provider": None, "status": None},
        "billing_address_collection": link.get("billing_address_collection", "auto"),
        "cancel_url": None,
        "client_secret": None,
        "collected_information": {"business_name": None, "individual_name": None, "shipping_details": None},
        "consent": None,
        "consent_collection": link.get("consent_collection"),
        "currency_conversion": None,
        "custom_fields": [],
        "custom_text": dict(link.get("custom_text") or _custom_text()),
        "customer_account": None,
        "customer_creation": link.get("customer_creation", "if_required"),
        "discounts": [],
        "integration_identifier": None,
        "invoice": None,
        "invoice_creation": json.loads(json.dumps(link.get("invoice_creation") or invoice_creation_defaults())),
        "locale": "auto",
        "managed_payments": None,
        "optional_items": None,
        "origin_context": None,
        "payment_method_collection": link.get("payment_method_collection", "always"),
        "payment_method_configuration_details": None,
        "payment_method_options": {},
        "permissions": None,
        "phone_number_collection": {"enabled": False},
        "recovered_from": None,
        "saved_payment_method_options": None,
        "setup_intent": None,
        "shipping_address_collection": None,
        "shipping_cost": None,
        "shipping_options": [],
        "submit_type": link.get("submit_type", "auto"),
        "subscription": None,
        "tax_id_collection": {"enabled": False, "required": "never"},
        "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        "ui_mode": "hosted_page",
        "wallet_options": None,
    }


def customer_details(email: str, country: str = "US") -> dict[str, Any]:
    return {
        "address": {"city": None, "country": country, "line1": None, "line2": None, "postal_code": None,
                    "state": None},
        "business_name": None,
        "email": email,
        "individual_name": None,
        "name": None,
        "phone": None,
        "tax_exempt": "none",
        "tax_ids": [],
    }


def payment_intent_defaults() -> dict[str, Any]:
    """A Checkout Session's PaymentIntent: the fields the stand-in does not model, as Stripe sends them."""
    return {
        "allowed_payment_method_types": None,
        "amount_details": {"tip": {}},
        "application": None,
        "application_fee_amount": None,
        "automatic_payment_methods": None,
        "canceled_at": None,
        "cancellation_reason": None,
        "confirmation_method": "automatic",
        "customer_account": None,
        "excluded_payment_method_types": None,
        "managed_payments": None,
        "next_action": None,
        "on_behalf_of": None,
        "payment_method_configuration_details": None,
        "payment_method_options": {},
        "processing": None,
        "review": None,
        "setup_future_usage": None,
        "shipping": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "transfer_data": None,
        "transfer_group": None,
    }



def invoice_line(item: Mapping[str, Any], *, invoice_id: str, period: int, livemode: bool) -> dict[str, Any]:
    """The invoice line of a Checkout Session's line item (an invoice item, at the item's price)."""
    price = item.get("price") or {}
    quantity = item.get("quantity")
    return {
        "id": new_id("il", 24),
        "object": "line_item",
        "amount": item["amount_total"],
        "currency": item["currency"],
        "description": item.get("description"),
        "discount_amounts": [],
        "discountable": True,
        "discounts": [],
        "invoice": invoice_id,
        "livemode": livemode,
        "metadata": {},
        "parent": {
            "invoice_item_details": {"invoice_item": new_id("ii", 24), "proration": False,
                                     "proration_details": {"credited_items": None}, "subscription": None},
            "subscription_item_details": None,
            "type": "invoice_item_details",
        },
        "period": {"end": period, "start": period},
        "pretax_credit_amounts": [],
        "pricing": {
            "price_details": {"price": price["id"], "product": price["product"]},
            "type": "price_details",
            "unit_amount_decimal": price.get("unit_amount_decimal"),
        } if price else None,
        "quantity": quantity,
        "quantity_decimal": None if quantity is None else str(quantity),
        "subscription": None,
        "subtotal": item["amount_subtotal"],
        "taxes": [],
    }


def invoice_defaults(invoice_data: Mapping[str, Any], session: Mapping[str, Any]) -> dict[str, Any]:
    """The post-payment invoice of a Checkout Session (``invoice_creation``): finalized when the session completes,
    charged through the session's PaymentIntent; the fields the stand-in does not model, as Stripe sends them."""
    details = session.get("customer_details") or {}
    created = int(session.get("created") or 0)
    totals = session.get("total_details") or {}
    token = new_id("x", 40)[2:]
    return {
        "account_country": None,
        "account_name": None,
        "account_tax_ids": invoice_data.get("account_tax_ids"),
        "amount_overpaid": 0,
        "amount_paid_off_stripe": 0,
        "amount_shipping": int(totals.get("amount_shipping") or 0),
        "application": None,
        "auto_advance": False,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None, "provider": None,
                          "status": None},
        "automatically_finalizes_at": None,
        "confirmation_secret": None,
        "custom_fields": invoice_data.get("custom_fields"),
        "customer_account": None,
        "customer_address": details.get("address"),
        "customer_email": details.get("email"),
        "customer_name": details.get("name"),
        "customer_phone": details.get("phone"),
        "customer_shipping": None,
        "customer_tax_exempt": details.get("tax_exempt", "none"),
        "customer_tax_ids": list(details.get("tax_ids") or []),
        "default_payment_method": None,
        "default_source": None,
        "default_tax_rates": [],
        "description": invoice_data.get("description"),
        "discounts": [],
        "due_date": None,
        "effective_at": created,
        "ending_balance": 0,
        "footer": invoice_data.get("footer"),
        "from_invoice": None,
        "hosted_invoice_url": f"https://invoice.stripe.com/i/{token}",
        "invoice_pdf": f"https://pay.stripe.com/invoice/{token}/pdf",
        "issuer": dict(invoice_data.get("issuer") or {"type": "self"}),
        "last_finalization_error": None,
        "latest_revision": None,
        "next_payment_attempt": None,
        "number": f"{new_id('x', 8)[2:].upper()}-0001",
        "on_behalf_of": None,
        "parent": None,
        "payment_settings": {"default_mandate": None, "payment_method_options": None, "payment_method_types": None},
        "period_end": created,
        "period_start": created,
        "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0,
        "receipt_number": None,
        "rendering": None,
        "shipping_cost": None,
        "shipping_details": None,
        "starting_balance": 0,
        "statement_descriptor": None,
        "test_clock": None,
        "total_discount_amounts": [],
        "total_pretax_credit_amounts": [],
        "total_taxes": [],
        "webhooks_delivered_at": created,
    }

def account_object(account_id: str, *, email: str, display_name: str, created: int, country: str,
                   default_currency: str) -> dict[str, Any]:
    """``GET /v1/account`` of a fully onboarded standard account."""
    no_requirements = {
        "alternatives": [], "current_deadline": None, "currently_due": [], "disabled_reason": None,
        "errors": [], "eventually_due": [], "past_due": [], "pending_verification": [],
    }
    return {
        "id": account_id,
        "object": "account",
        "business_profile": {
            "annual_revenue": None, "estimated_worker_count": None, "mcc": None,
            "minority_owned_business_designation": None, "name": display_name, "product_description": None,
            "support_address": None, "support_email": email, "support_phone": None, "support_url": None,
            "url": None,
        },
        "business_type": "company",
        "capabilities": {"card_payments": "active", "transfers": "active"},
        "charges_enabled": True,
        "controller": {"type": "account"},
        "country": country,
        "created": created,
        "default_currency": default_currency,
        "details_submitted": True,
        "email": email,
        "external_accounts": {"object": "list", "data": [], "has_more": False,
                              "url": f"/v1/accounts/{account_id}/external_accounts"},
        "future_requirements": dict(no_requirements),
        "groups": None,
        "metadata": {},
        "payouts_enabled": True,
        "requirements": dict(no_requirements),
        "settings": {
            "bacs_debit_payments": {"display_name": None, "service_user_number": None},
            "branding": {"icon": None, "logo": None, "primary_color": None, "secondary_color": None},
            "card_issuing": {"tos_acceptance": {"date": None, "ip": None}},
            "card_payments": {"decline_on": {"avs_failure": False, "cvc_failure": False},
                              "statement_descriptor_prefix": None, "statement_descriptor_prefix_kana": None,
                              "statement_descriptor_prefix_kanji": None},
            "dashboard": {"display_name": display_name, "timezone": "Etc/UTC"},
            "invoices": {"default_account_tax_ids": None, "hosted_payment_method_save": "offer"},
            "payments": {"statement_descriptor": display_name[:22].upper(), "statement_descriptor_kana": None,
                         "statement_descriptor_kanji": None},
            "payouts": {"debit_negative_balances": True,
                        "schedule": {"delay_days": 2, "interval": "daily"}, "statement_descriptor": None},
            "sepa_debit_payments": {},
        },
        "tos_acceptance": {"date": created, "ip": None, "user_agent": None},
        "type": "standard",
    }
