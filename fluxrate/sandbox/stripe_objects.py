"""Building blocks of the Stripe stand-in: ids, Stripe's form encoding, error bodies, param validation."""

from __future__ import annotations

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
        raise StripeError(400, f"Invalid string: {value!r}", code="parameter_invalid_string", param=param)
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
            400, f"Invalid object: {param} must be a hash", code="parameter_invalid_object", param=param
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
        raise StripeError(400, "Invalid hash", code="parameter_invalid_object", param=param)
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
    "charge.dispute.created",
    "invoice.paid",
    "invoice.payment_succeeded",
    "invoice.payment_failed",
    "invoice.finalized",
    "customer.created",
    "customer.updated",
    "account.updated",
    "account.application.deauthorized",
}
