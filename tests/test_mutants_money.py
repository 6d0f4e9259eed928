"""Tests that kill mutants `make mutate` found surviving in fluxrate/money.py (docs/testing.md)."""

import typing
from decimal import Decimal

import pytest

from fluxrate import money


def test_a_three_decimal_amount_not_ending_in_zero_is_refused_with_the_nearest_valid_amount() -> None:
    with pytest.raises(money.MoneyError) as refused:
        money.to_minor("1.234", "KWD")
    assert str(refused.value) == (
        "amount 1.234 does not fit KWD on Stripe: three-decimal currencies must end in 0 (e.g. 1.230)"
    )


@pytest.mark.parametrize("amount", [12.5, 12, Decimal("Infinity"), Decimal("NaN"), None])
def test_an_amount_that_is_not_a_finite_decimal_is_a_money_error(amount: object) -> None:
    with pytest.raises(money.MoneyError, match="must be a finite Decimal"):
        money.to_minor(amount, "USD")  # type: ignore[arg-type]


def test_the_type_hints_resolve() -> None:
    """Annotations are strings here (``from __future__ import annotations``); tools that read them at run time
    (``typing.get_type_hints``, pydantic) need them to evaluate."""
    for function in (money.to_minor, money.from_minor, money.format_minor, money.total_minor, money.parse_amount):
        assert typing.get_type_hints(function)
