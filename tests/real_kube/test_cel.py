"""The Invoice CRD's CEL rules as the real kube-apiserver (Kubernetes 1.34) enforces them, seen through kubectl.

Invoices are created as the admin in a namespace of their own; no operator runs, so no StripeIntegration is
needed and nothing but these patches changes the objects. Each refusal is asserted on kubectl's stderr holding
the CRD rule's own message.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from fluxrate_sandbox.real_kube import RealKube

from ..manifests import example
from .crd_helpers import CRD_DIRS, crd_files, kubectl, kubectl_ok, load_crd, renamed_copy, rule_message, spec_rules

NAMESPACE = "real-cel"
INVOICE = load_crd("Invoice")
FINALIZED_ONLY_TO_VOID = rule_message(INVOICE, "oldSelf.state != 'Finalized'")
VOID_STAYS_VOID = rule_message(INVOICE, "oldSelf.state != 'Void'")
IMMUTABLE_AFTER_DRAFT = rule_message(INVOICE, "self.lineItems == oldSelf.lineItems")
NO_MINOR_UNIT = rule_message(INVOICE, "matches('^[0-9]+$')")
AT_MOST_TWO_DECIMALS = rule_message(INVOICE, "[.][0-9]{1,2}")
_names = itertools.count(1)


@pytest.fixture(scope="module")
def cel_namespace(real_kube_cluster: RealKube) -> Iterator[str]:
    asyncio.run(real_kube_cluster.ensure_namespace(NAMESPACE))
    yield NAMESPACE
    kubectl(real_kube_cluster, "delete", "namespace", NAMESPACE, "--wait=false")


def invoice(state: str = "Draft", currency: str = "USD", unit_amount: str = "12.50") -> dict[str, Any]:
    doc = example("Invoice", "USD")
    doc["metadata"] = {"name": f"inv-{next(_names)}", "namespace": NAMESPACE}
    doc["spec"].update(state=state, currency=currency)
    for item in doc["spec"]["lineItems"]:
        item["unitAmount"] = unit_amount
    return doc


def create(kube: RealKube, doc: dict[str, Any]) -> Any:
    return kubectl(kube, "create", "-f", "-", stdin=yaml.safe_dump(doc))


def patch_spec(kube: RealKube, name: str, spec: dict[str, Any]) -> Any:
    return kubectl(kube, "-n", NAMESPACE, "patch", "invoice", name, "--type=merge", "-p", json.dumps({"spec": spec}))


def stored_spec(kube: RealKube, name: str) -> dict[str, Any]:
    return dict(json.loads(kubectl_ok(kube, "-n", NAMESPACE, "get", "invoice", name, "-o", "json"))["spec"])


def invoice_in(kube: RealKube, state: str) -> str:
    """An invoice walked the way a user would: created Draft, then Finalized, then Void, up to ``state``."""
    doc = invoice("Draft")
    kubectl_ok(kube, "create", "-f", "-", stdin=yaml.safe_dump(doc))
    name = doc["metadata"]["name"]
    for step in ["Finalized", "Void"][:["Draft", "Finalized", "Void"].index(state)]:
        done = patch_spec(kube, name, {"state": step})
        assert done.returncode == 0, done.stderr
    return name


def assert_refused(done: Any, message: str) -> None:
    assert done.returncode != 0
    assert "is invalid" in done.stderr
    assert message in done.stderr, done.stderr


# --- transitions ----------------------------------------------------------------------------------------------


def test_a_draft_is_edited_freely_then_finalized_then_voided(real_kube: RealKube, cel_namespace: str) -> None:
    name = invoice_in(real_kube, "Draft")
    items = [{"description": "Consulting", "quantity": 2, "unitAmount": "80.00"}]

    for change in ({"lineItems": items, "currency": "EUR"}, {"state": "Finalized"}, {"state": "Void"}):
        done = patch_spec(real_kube, name, change)
        assert done.returncode == 0, done.stderr

    spec = stored_spec(real_kube, name)
    assert (spec["state"], spec["currency"], spec["lineItems"]) == ("Void", "EUR", items)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [("Finalized", "Draft", FINALIZED_ONLY_TO_VOID), ("Void", "Draft", VOID_STAYS_VOID),
     ("Void", "Finalized", VOID_STAYS_VOID)],
    ids=["Finalized-to-Draft", "Void-to-Draft", "Void-to-Finalized"],
)
def test_a_refused_state_change_shows_the_rule_message(real_kube: RealKube, cel_namespace: str, old: str, new: str,
                                                        message: str) -> None:
    name = invoice_in(real_kube, old)

    assert_refused(patch_spec(real_kube, name, {"state": new}), message)
    assert stored_spec(real_kube, name)["state"] == old


@pytest.mark.parametrize("state", ["Finalized", "Void"])
def test_line_items_cannot_be_edited_after_draft(real_kube: RealKube, cel_namespace: str, state: str) -> None:
    name = invoice_in(real_kube, state)
    before = stored_spec(real_kube, name)["lineItems"]

    done = patch_spec(real_kube, name, {"lineItems": [{"description": "Cheaper", "quantity": 1, "unitAmount": "1.00"}]})

    assert_refused(done, IMMUTABLE_AFTER_DRAFT)
    assert stored_spec(real_kube, name)["lineItems"] == before


# --- amounts and currencies -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("currency", "unit_amount", "message"),
    [("JPY", "1500.5", NO_MINOR_UNIT), ("JPY", "1500.50", NO_MINOR_UNIT), ("USD", "12.345", AT_MOST_TWO_DECIMALS)],
    ids=["JPY-1500.5", "JPY-1500.50", "USD-12.345"],
)
def test_decimals_the_currency_does_not_have_are_refused(real_kube: RealKube, cel_namespace: str, currency: str,
                                                         unit_amount: str, message: str) -> None:
    doc = invoice("Finalized", currency, unit_amount)

    assert_refused(create(real_kube, doc), message)
    missing = kubectl(real_kube, "-n", NAMESPACE, "get", "invoice", doc["metadata"]["name"])
    assert "NotFound" in missing.stderr


@pytest.mark.parametrize(("currency", "unit_amount"), [("KWD", "12.345"), ("JPY", "1500"), ("USD", "12.34")])
def test_amounts_within_the_currency_decimals_are_accepted(real_kube: RealKube, cel_namespace: str, currency: str,
                                                           unit_amount: str) -> None:
    doc = invoice("Finalized", currency, unit_amount)

    done = create(real_kube, doc)

    assert done.returncode == 0, done.stderr
    spec = stored_spec(real_kube, doc["metadata"]["name"])
    assert (spec["currency"], spec["lineItems"][1]["unitAmount"]) == (currency, unit_amount)


# --- the cost of the rules ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [path for directory in CRD_DIRS for path in crd_files(directory)],
                         ids=lambda path: f"{path.parent.parent.name}/{path.parent.name}/{path.name}")
def test_every_rule_is_within_the_servers_cost_budget(real_kube: RealKube, path: Any) -> None:
    """Each CRD file, served under another group so the server judges it as a new CRD: accepted, no warning."""
    crd = renamed_copy(yaml.safe_load(path.read_text()), "costcheck.fluxrate.test")

    done = kubectl(real_kube, "create", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(crd))

    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.strip().endswith("created (server dry run)")


def test_the_server_refuses_rules_whose_cost_is_unbounded(real_kube: RealKube) -> None:
    """The same Invoice CRD without unitAmount's maxLength: the rules that match each unitAmount against a regex
    can no longer be bounded, and the server refuses the CRD naming exactly those rules."""
    crd = renamed_copy(INVOICE, "costcheck.fluxrate.test")
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    del spec["properties"]["lineItems"]["items"]["properties"]["unitAmount"]["maxLength"]
    regex_rules = [index for index, rule in enumerate(spec_rules(INVOICE)) if "unitAmount.matches(" in rule["rule"]]
    assert len(regex_rules) == 2

    done = kubectl(real_kube, "create", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(crd))

    assert done.returncode != 0
    refused = [line for line in done.stderr.splitlines() if "estimated rule cost exceeds budget" in line]
    assert [line.split(": Forbidden:")[0].lstrip("* ") for line in refused] == [
        f"spec.validation.openAPIV3Schema.properties[spec].x-kubernetes-validations[{index}].rule"
        for index in regex_rules]
