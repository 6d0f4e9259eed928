"""The forward-only phase table as data: every move it allows and refuses, Paid <-> Refunded the only way back."""

from __future__ import annotations

import itertools

import pytest

from fluxrate.invoice_status import NEXT_PHASES, PAID_PHASES, can_move, is_paid
from fluxrate.models import InvoicePhase

PHASES = ["Draft", "Finalized", "Open", "Failed", "Void", "Paid", "Refunded"]
ALLOWED = {
    ("Draft", "Finalized"), ("Draft", "Open"), ("Draft", "Failed"), ("Draft", "Void"), ("Draft", "Paid"),
    ("Finalized", "Open"), ("Finalized", "Failed"), ("Finalized", "Void"), ("Finalized", "Paid"),
    ("Open", "Void"), ("Open", "Paid"),
    ("Failed", "Void"), ("Failed", "Paid"),
    ("Void", "Paid"),
    ("Paid", "Refunded"),
    ("Refunded", "Paid"),
}


def test_the_table_covers_every_phase_of_the_crd() -> None:
    assert set(NEXT_PHASES) == set(PHASES) == set(InvoicePhase.__args__)  # type: ignore[attr-defined]


@pytest.mark.parametrize(("current", "new"), [p for p in itertools.product(PHASES, PHASES) if p[0] != p[1]])
def test_each_move_is_allowed_exactly_when_the_table_says(current: str, new: str) -> None:
    assert can_move(current, new) is ((current, new) in ALLOWED)


def test_only_paid_reaches_refunded_and_refunded_only_goes_back_to_paid() -> None:
    assert {c for c, n in ALLOWED if n == "Refunded"} == {"Paid"}
    assert NEXT_PHASES["Refunded"] == frozenset({"Paid"})
    assert NEXT_PHASES["Paid"] == frozenset({"Refunded"})


def test_staying_and_a_first_phase_are_always_allowed() -> None:
    assert all(can_move(p, p) for p in PHASES)
    assert all(can_move(None, p) for p in PHASES)


def test_paid_phases_are_paid_and_refunded() -> None:
    assert PAID_PHASES == {"Paid", "Refunded"}
    assert [p for p in PHASES if is_paid(p)] == ["Paid", "Refunded"]
    assert not is_paid(None)
