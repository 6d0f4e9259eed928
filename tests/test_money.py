from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fluxrate import money


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        ("12.50", "USD", 1250),
        ("0.01", "USD", 1),
        ("1500", "JPY", 1500),
        ("1.230", "KWD", 1230),
        ("0.010", "KWD", 10),
        ("199", "EUR", 19900),
    ],
)
def test_known_amounts_convert_exactly(amount: str, currency: str, minor: int) -> None:
    assert money.to_minor(amount, currency) == minor
    assert money.from_minor(minor, currency) == Decimal(amount)


@given(minor=st.integers(min_value=0, max_value=10**12))
def test_usd_round_trips(minor: int) -> None:
    assert money.to_minor(money.from_minor(minor, "USD"), "USD") == minor


@given(minor=st.integers(min_value=0, max_value=10**12))
def test_jpy_round_trips_without_scaling(minor: int) -> None:
    assert money.from_minor(minor, "JPY") == Decimal(minor)
    assert money.to_minor(money.from_minor(minor, "JPY"), "JPY") == minor


@given(tens=st.integers(min_value=0, max_value=10**11))
def test_kwd_round_trips_in_multiples_of_ten(tens: int) -> None:
    minor = tens * 10
    assert money.to_minor(money.from_minor(minor, "KWD"), "KWD") == minor


@pytest.mark.parametrize(
    ("amount", "currency", "hint"),
    [
        ("0.001", "USD", "at most 2 decimals"),
        ("1.5", "JPY", "no decimals"),
        ("1.001", "KWD", "must end in 0"),
        ("1e3", "USD", "plain decimal string"),
        ("-5", "USD", "plain decimal string"),
        ("12,50", "EUR", "plain decimal string"),
    ],
)
def test_amounts_that_do_not_fit_are_rejected_with_the_reason(amount: str, currency: str, hint: str) -> None:
    with pytest.raises(money.MoneyError, match=hint):
        money.to_minor(amount, currency)


def test_exponents_follow_stripe() -> None:
    assert [money.exponent(c) for c in ("USD", "JPY", "KRW", "KWD", "BHD", "eur")] == [2, 0, 0, 3, 3, 2]


def test_bad_currency_code_says_what_to_write() -> None:
    with pytest.raises(money.MoneyError, match="three letters"):
        money.exponent("US")


def test_totals_are_exact_where_floats_are_not() -> None:
    # 0.1 + 0.2 != 0.3 in binary floating point; our totals are exact.
    assert money.total_minor([(1, "0.10"), (1, "0.20")], "USD") == 30
    assert money.total_minor([(3, "12.50"), (1, "199.00")], "USD") == 23650
    assert money.format_minor(23650, "USD") == "236.50 USD"
    assert money.format_minor(60000, "JPY") == "60000 JPY"
    assert money.format_minor(1230, "KWD") == "1.230 KWD"


def test_minor_amount_must_be_an_integer() -> None:
    with pytest.raises(money.MoneyError):
        money.from_minor(12.5, "USD")  # type: ignore[arg-type]
