"""The pydantic models and the CRD schemas describe the same fields, requirements, enums and defaults."""

from typing import Any

import pytest
from pydantic import BaseModel

from fluxrate import crds, models


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    while True:
        if "$ref" in node:
            node = {**defs[node["$ref"].rsplit("/", 1)[1]], **{k: v for k, v in node.items() if k != "$ref"}}
        elif "anyOf" in node:
            options = [o for o in node["anyOf"] if o.get("type") != "null"]
            assert len(options) == 1, node
            node = {**options[0], **{k: v for k, v in node.items() if k != "anyOf"}}
        elif "allOf" in node and len(node["allOf"]) == 1:
            node = {**node["allOf"][0], **{k: v for k, v in node.items() if k != "allOf"}}
        else:
            return node


def _compare(crd: dict[str, Any], model: dict[str, Any], defs: dict[str, Any], path: str) -> list[str]:
    model = _resolve(model, defs)
    problems: list[str] = []
    if "enum" in crd or "enum" in model or "const" in model:
        model_enum = model.get("enum", [model["const"]] if "const" in model else None)
        if sorted(crd.get("enum", [])) != sorted(model_enum or []):
            problems.append(f"{path}: enum {crd.get('enum')} != {model_enum}")
    if "pattern" in crd and crd["pattern"] != model.get("pattern"):
        problems.append(f"{path}: pattern {crd['pattern']!r} != {model.get('pattern')!r}")
    if "default" in crd and crd["default"] != {} and crd["default"] != model.get("default"):
        problems.append(f"{path}: default {crd['default']!r} != {model.get('default')!r}")
    if crd.get("type") == "object" and "properties" in crd:
        crd_props, model_props = crd["properties"], model.get("properties", {})
        if set(crd_props) != set(model_props):
            problems.append(f"{path}: fields {sorted(crd_props)} != {sorted(model_props)}")
        if set(crd.get("required", [])) != set(model.get("required", [])):
            problems.append(f"{path}: required {crd.get('required')} != {model.get('required')}")
        for name in set(crd_props) & set(model_props):
            problems += _compare(crd_props[name], model_props[name], defs, f"{path}.{name}")
    if crd.get("type") == "array":
        for bound in ("minItems", "maxItems"):
            if crd.get(bound) != model.get(bound):
                problems.append(f"{path}: {bound} {crd.get(bound)} != {model.get(bound)}")
        problems += _compare(crd["items"], model.get("items", {}), defs, f"{path}[]")
    return problems


@pytest.mark.parametrize(
    ("kind", "part", "model"),
    [
        ("Invoice", "spec", models.InvoiceSpec),
        ("Invoice", "status", models.InvoiceStatus),
        ("StripeIntegration", "spec", models.StripeIntegrationSpec),
        ("StripeIntegration", "status", models.StripeIntegrationStatus),
    ],
)
def test_model_and_crd_agree(kind: str, part: str, model: type[BaseModel]) -> None:
    model_schema = model.model_json_schema(by_alias=True)
    crd_schema = crds.openapi_schema(kind)["properties"][part]
    assert _compare(crd_schema, model_schema, model_schema.get("$defs", {}), part) == []


def test_drift_check_notices_a_missing_field() -> None:
    crd_schema = crds.openapi_schema("Invoice")["properties"]["spec"]
    damaged = {**crd_schema, "properties": {k: v for k, v in crd_schema["properties"].items() if k != "memo"}}
    model_schema = models.InvoiceSpec.model_json_schema(by_alias=True)
    assert _compare(damaged, model_schema, model_schema["$defs"], "spec")
