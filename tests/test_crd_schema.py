import re
from typing import Any

import pytest

from fluxrate import crds

from .manifests import INVALID, example_documents
from .schema_check import model_errors, schema_errors


@pytest.mark.parametrize("doc", [d for d in example_documents() if d["kind"] != "Secret"], ids=lambda d: d["kind"])
def test_examples_are_valid_for_schema_and_models(doc: dict[str, Any]) -> None:
    assert schema_errors(doc) == []
    assert model_errors(doc) == []


def test_examples_hold_a_secret_an_integration_and_usd_and_jpy_invoices() -> None:
    docs = example_documents()
    assert sorted(d["kind"] for d in docs) == ["Invoice", "Invoice", "Secret", "StripeIntegration"]
    assert sorted(d["spec"]["currency"] for d in docs if d["kind"] == "Invoice") == ["JPY", "USD"]


@pytest.mark.parametrize(("doc", "path"), [(doc, path) for _, doc, path in INVALID], ids=[i for i, _, _ in INVALID])
def test_invalid_manifests_are_rejected_by_schema_and_models_naming_the_field(doc: dict[str, Any], path: str) -> None:
    schema = schema_errors(doc)
    model = model_errors(doc)
    assert any(message.startswith(path + ":") for message in schema), schema
    assert any(message.startswith(path + ":") or message.startswith(path + "[") for message in model), model


def test_there_are_at_least_ten_invalid_manifests() -> None:
    assert len(INVALID) >= 10


def _walk(schema: dict[str, Any], path: str = ""):
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from _walk(sub, f"{path}.{name}")
    if "items" in schema:
        yield from _walk(schema["items"], f"{path}[]")


@pytest.mark.parametrize("kind", ["Invoice", "StripeIntegration"])
def test_every_field_has_a_description_for_kubectl_explain(kind: str) -> None:
    undocumented = [
        path
        for path, node in _walk(crds.openapi_schema(kind))
        if path and path != ".metadata" and not node.get("description")
        and not path.endswith("[]")
    ]
    assert undocumented == []


_JSONPATH_STEP = re.compile(r"\.([A-Za-z]+)(\[\?\(@\.(\w+)==\"(\w+)\"\)\])?")


def _schema_at(schema: dict[str, Any], json_path: str) -> dict[str, Any]:
    node = schema
    for name, filter_, _, _ in _JSONPATH_STEP.findall(json_path):
        if name in {"creationTimestamp"} and node is schema.get("properties", {}).get("metadata"):
            return {"type": "string"}
        node = node["properties"][name]
        if filter_:
            node = node["items"]
    return node


@pytest.mark.parametrize("kind", ["Invoice", "StripeIntegration"])
def test_printer_columns_point_at_fields_that_exist(kind: str) -> None:
    crd = crds.crd_for_kind(kind)
    version = crds.served_version(crd)
    schema = version["schema"]["openAPIV3Schema"]
    columns = version["additionalPrinterColumns"]
    for column in columns:
        if column["jsonPath"] == ".metadata.creationTimestamp":
            continue
        node = _schema_at(schema, column["jsonPath"])
        assert node.get("type") in {"string", "boolean", "integer"}, column
    names = [c["name"] for c in columns]
    expected = {
        "Invoice": ["State", "Phase", "Total", "Refunded", "Overdue", "Currency", "Customer", "Age", "Link", "Due"],
        "StripeIntegration": ["Mode", "Active", "Ready", "Age", "Webhook URL"],
    }[kind]
    assert names == expected
    assert [c["name"] for c in columns if c.get("priority", 0) > 0] == \
        {"Invoice": ["Link", "Due"], "StripeIntegration": ["Webhook URL"]}[kind]


@pytest.mark.parametrize("kind", ["Invoice", "StripeIntegration"])
def test_crd_names_scope_and_status_subresource(kind: str) -> None:
    crd = crds.crd_for_kind(kind)
    names = crd["spec"]["names"]
    assert crd["spec"]["group"] == "billing.fluxrate.co"
    assert crd["spec"]["scope"] == "Namespaced"
    assert names["categories"] == ["fluxrate"]
    assert names["shortNames"] == {"Invoice": ["inv"], "StripeIntegration": ["si"]}[kind]
    assert crds.served_version(crd)["subresources"] == {"status": {}}
