"""Manifests for schema tests: the examples and a catalogue of invalid variations."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def example_documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        docs.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return docs


def example(kind: str, currency: str | None = None) -> dict[str, Any]:
    for doc in example_documents():
        if doc["kind"] == kind and (currency is None or doc["spec"].get("currency") == currency):
            return copy.deepcopy(doc)
    raise LookupError(kind)


def _invoice(mutate: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    doc = example("Invoice", "USD")
    mutate(doc["spec"])
    return doc


def _integration(mutate: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    doc = example("StripeIntegration")
    mutate(doc["spec"])
    return doc


def _set(path: list[Any], value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(spec: dict[str, Any]) -> None:
        target = spec
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def _delete(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda spec: spec.pop(key)


# (id, manifest, the field path the error must name)
INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("lowercase-currency", _invoice(_set(["currency"], "usd")), "spec.currency"),
    ("currency-too-long", _invoice(_set(["currency"], "USDT")), "spec.currency"),
    (
        "21-line-items",
        _invoice(_set(["lineItems"], [{"description": "x", "quantity": 1, "unitAmount": "1"}] * 21)),
        "spec.lineItems",
    ),
    ("no-line-items", _invoice(_set(["lineItems"], [])), "spec.lineItems"),
    ("negative-quantity", _invoice(_set(["lineItems", 0, "quantity"], -1)), "spec.lineItems[0].quantity"),
    ("zero-quantity", _invoice(_set(["lineItems", 0, "quantity"], 0)), "spec.lineItems[0].quantity"),
    ("quantity-as-string", _invoice(_set(["lineItems", 0, "quantity"], "2")), "spec.lineItems[0].quantity"),
    ("float-amount", _invoice(_set(["lineItems", 1, "unitAmount"], 12.5)), "spec.lineItems[1].unitAmount"),
    (
        "amount-with-four-decimals",
        _invoice(_set(["lineItems", 0, "unitAmount"], "19.9999")),
        "spec.lineItems[0].unitAmount",
    ),
    ("amount-in-exponent-form", _invoice(_set(["lineItems", 0, "unitAmount"], "1e3")), "spec.lineItems[0].unitAmount"),
    ("negative-amount", _invoice(_set(["lineItems", 0, "unitAmount"], "-5.00")), "spec.lineItems[0].unitAmount"),
    ("bad-email", _invoice(_set(["customer", "email"], "not-an-email")), "spec.customer.email"),
    ("unknown-state", _invoice(_set(["state"], "Paid")), "spec.state"),
    ("missing-customer", _invoice(_delete("customer")), "spec.customer"),
    ("uppercase-integration-name", _invoice(_set(["integrationRef", "name"], "Prod")), "spec.integrationRef.name"),
    ("missing-secretKeyRef", _integration(_delete("secretKeyRef")), "spec.secretKeyRef"),
    ("secretKeyRef-without-key", _integration(lambda s: s["secretKeyRef"].pop("key")), "spec.secretKeyRef.key"),
    (
        "bad-event-name",
        _integration(_set(["webhookEndpoint", "enabledEvents"], ["Checkout Session Completed"])),
        "spec.webhookEndpoint.enabledEvents[0]",
    ),
    (
        "unknown-after-completion",
        _integration(_set(["paymentLinks", "afterCompletion", "type"], "popup")),
        "spec.paymentLinks.afterCompletion.type",
    ),
    ("active-as-string", _integration(_set(["active"], "yes")), "spec.active"),
]
