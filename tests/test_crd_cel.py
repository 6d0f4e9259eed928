"""The Invoice's CEL transition rules, evaluated with cel-python as the API server would."""

import copy
from typing import Any

import pytest

from fluxrate import crds
from fluxrate_sandbox.kube_cel import CelRules

from .manifests import example

SCHEMA = crds.openapi_schema("Invoice")
RULES = CelRules.compile("invoices.billing.fluxrate.co", SCHEMA)


def violations(old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    """Messages of the rules that reject spec ``new`` (rules using oldSelf only run on update, as on a server)."""
    old_doc = {"spec": old} if old is not None else None
    return [cause.message for cause in RULES.validate(SCHEMA, {"spec": new}, old_doc)]


def test_every_rule_is_enforced_by_cel_python() -> None:
    assert RULES.skipped == []


def spec(state: str = "Draft", **changes: Any) -> dict[str, Any]:
    value = copy.deepcopy(example("Invoice", "USD")["spec"])
    value.update(state=state, **changes)
    return value


@pytest.mark.parametrize(
    ("old_state", "new_state"),
    [("Draft", "Draft"), ("Draft", "Finalized"), ("Finalized", "Void"), ("Draft", "Void"), ("Finalized", "Finalized")],
)
def test_allowed_transitions(old_state: str, new_state: str) -> None:
    assert violations(spec(old_state), spec(new_state)) == []


def test_draft_can_be_edited_freely() -> None:
    assert violations(spec("Draft"), spec("Draft", currency="EUR", lineItems=[
        {"description": "x", "quantity": 2, "unitAmount": "3.00"}])) == []


@pytest.mark.parametrize(
    "change",
    [
        {"lineItems": [{"description": "cheaper", "quantity": 1, "unitAmount": "1.00"}]},
        {"currency": "EUR"},
        {"customer": {"id": "someone-else", "email": "x@y.example"}},
        {"integrationRef": {"name": "other-stripe"}},
    ],
    ids=["lineItems", "currency", "customer", "integrationRef"],
)
def test_finalized_invoice_fields_are_immutable(change: dict[str, Any]) -> None:
    messages = violations(spec("Finalized"), spec("Finalized", **change))
    assert len(messages) == 1
    assert "create a new Invoice" in messages[0]


@pytest.mark.parametrize("new_state", ["Draft", "Finalized"])
def test_void_stays_void(new_state: str) -> None:
    messages = violations(spec("Void"), spec(new_state))
    assert any("Void invoice stays Void" in m for m in messages)


def test_finalized_cannot_go_back_to_draft() -> None:
    assert any("can only move to Void" in m for m in violations(spec("Finalized"), spec("Draft")))


def test_memo_and_due_date_stay_editable_after_finalize() -> None:
    assert violations(spec("Finalized"), spec("Finalized", memo="Updated note", dueDate="2027-01-31")) == []


@pytest.mark.parametrize(
    ("currency", "amount", "fragment"),
    [("JPY", "1.5", "no minor unit"), ("USD", "12.505", "more decimals than the currency allows")],
)
def test_amounts_that_do_not_fit_the_currency_are_rejected_on_create(currency: str, amount: str, fragment: str) -> None:
    new = spec(currency=currency, lineItems=[{"description": "x", "quantity": 1, "unitAmount": amount}])
    assert any(fragment in m for m in violations(None, new))


def test_three_decimal_currency_accepts_three_decimals() -> None:
    new = spec(currency="KWD", lineItems=[{"description": "x", "quantity": 1, "unitAmount": "1.230"}])
    assert violations(None, new) == []
