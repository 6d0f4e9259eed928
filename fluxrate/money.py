"""Money as ``Decimal`` major units and integer minor units, with Stripe's currency exponents.

Never float. An amount that does not fit its currency is an error, never rounded.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

# https://docs.stripe.com/currencies#zero-decimal
ZERO_DECIMAL_CURRENCIES = frozenset(
    "BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF XPF".split()
)
# https://docs.stripe.com/currencies#three-decimal: Stripe wants the minor amount to end in 0.
THREE_DECIMAL_CURRENCIES = frozenset("BHD JOD KWD OMR TND".split())

CURRENCY_PATTERN = re.compile(r"^[A-Z]{3}$")
# A plain decimal string in major units: no sign, no exponent, no thousands separators.
AMOUNT_PATTERN = re.compile(r"^(0|[1-9][0-9]{0,11})(\.[0-9]{1,3})?$")


class MoneyError(ValueError):
    """An amount or currency that cannot be represented exactly."""


def normalize_currency(currency: str) -> str:
    code = currency.strip().upper()
    if not CURRENCY_PATTERN.match(code):
        raise MoneyError(f"currency {currency!r} is not an ISO 4217 code: use three letters, e.g. USD")
    return code


def exponent(currency: str) -> int:
    """Number of decimal places Stripe uses for the currency."""
    code = normalize_currency(currency)
    if code in ZERO_DECIMAL_CURRENCIES:
        return 0
    if code in THREE_DECIMAL_CURRENCIES:
        return 3
    return 2


def parse_amount(text: str) -> Decimal:
    """Parse a major-unit decimal string such as ``"12.50"``; rejects floats-in-disguise like ``1e3``."""
    if not isinstance(text, str) or not AMOUNT_PATTERN.match(text):
        raise MoneyError(
            f"amount {text!r} is not a plain decimal string in major units: write it like \"12.50\" "
            "(no sign, no exponent, at most 3 decimals)"
        )
    try:
        return Decimal(text)
    except InvalidOperation as exc:  # pragma: no cover - the pattern already guarantees a valid literal
        raise MoneyError(f"amount {text!r} is not a decimal number") from exc


def to_minor(amount: Decimal | str, currency: str) -> int:
    """Major units -> integer minor units, exactly, or a MoneyError saying why it does not fit."""
    value = parse_amount(amount) if isinstance(amount, str) else amount
    if not isinstance(value, Decimal) or not value.is_finite():
        raise MoneyError(f"amount {amount!r} must be a finite Decimal")
    code = normalize_currency(currency)
    exp = exponent(code)
    scaled = value.scaleb(exp)
    if scaled != scaled.to_integral_value():
        places = "no decimals" if exp == 0 else f"at most {exp} decimals"
        raise MoneyError(f"amount {value} does not fit {code}: {code} takes {places}")
    minor = int(scaled)
    if exp == 3 and minor % 10 != 0:
        raise MoneyError(
            f"amount {value} does not fit {code} on Stripe: three-decimal currencies must end in 0 "
            f"(e.g. {Decimal(minor - minor % 10).scaleb(-3)})"
        )
    return minor


def from_minor(minor: int, currency: str) -> Decimal:
    """Integer minor units -> Decimal major units with the currency's exponent."""
    if isinstance(minor, bool) or not isinstance(minor, int):
        raise MoneyError(f"minor amount {minor!r} must be an integer")
    exp = exponent(currency)
    return Decimal(minor).scaleb(-exp).quantize(Decimal(1).scaleb(-exp))


def format_minor(minor: int, currency: str) -> str:
    """Display string such as ``"12.50 USD"`` or ``"1500 JPY"``."""
    return f"{from_minor(minor, currency)} {normalize_currency(currency)}"


def total_minor(lines: list[tuple[int, str]], currency: str) -> int:
    """Exact total in minor units of ``(quantity, unitAmount)`` pairs."""
    return sum(quantity * to_minor(unit_amount, currency) for quantity, unit_amount in lines)
