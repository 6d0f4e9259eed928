"""Validate Stripe objects against the vendored subset of Stripe's OpenAPI description (see README.md here).

The OpenAPI 3.0 schemas become JSON Schema (2020-12):

- ``nullable: true`` adds ``null`` to what a schema accepts;
- ``$ref: #/components/schemas/X`` points into ``$defs``;
- expandable fields (``x-expansionResources``) were pruned to their id form by the vendoring script, so an object
  there is an error (a test that expands a field checks the expanded object against its own schema);
- ``required`` is taken as Stripe's "always sent", and so is every ``nullable`` field: Stripe's description
  leaves nullable fields out of ``required``, but Stripe sends them, as ``null`` when empty (its fixtures3.json
  shows them on every object); fields that are neither (``line_items`` of a link, a webhook endpoint's
  ``secret``) are the ones Stripe sends only sometimes, and so are the nullable fields included only when
  expanded (``INCLUDED_ONLY_WHEN_EXPANDED``: a Charge's ``refunds``);
- an object schema with ``properties`` and no ``additionalProperties`` gets ``additionalProperties: false``, so a
  field Stripe doesn't have is an error (Stripe objects have no extra fields unless the schema says so).

Error codes (``error.code``, ``last_payment_error.code``) must be in Stripe's documented list and event types in
Stripe's list of event types, both as the pinned SDK carries them (``x-fluxrate`` in the subset).
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

HERE = Path(__file__).resolve().parent
SUBSET = HERE / "stripe_openapi_subset.json"
_REF = "#/components/schemas/"

# The object an event of each type carries in ``data.object`` (by type prefix).
EVENT_OBJECTS = {
    "charge.dispute.": "dispute",
    "charge.": "charge",
    "refund.": "refund",
    "checkout.session.": "checkout.session",
    "payment_intent.": "payment_intent",
    "payment_link.": "payment_link",
    "invoice_payment.": "invoice_payment",
    "invoice.": "invoice",
}


@functools.cache
def description() -> dict[str, Any]:
    return json.loads(SUBSET.read_text())


def api_version() -> str:
    return str(description()["info"]["version"])


def error_codes() -> frozenset[str]:
    return frozenset(description()["x-fluxrate"]["error_codes"])


def event_types() -> frozenset[str]:
    return frozenset(description()["x-fluxrate"]["event_types"])


def convert(node: Any) -> Any:
    """One OpenAPI 3.0 schema as JSON Schema 2020-12."""
    if isinstance(node, list):
        return [convert(v) for v in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-") or key in {"nullable", "format"}:
            continue
        if key == "$ref":
            out["$ref"] = "#/$defs/" + value[len(_REF):]
        elif key == "properties":
            out["properties"] = {name: convert(sub) for name, sub in value.items()}
        elif key == "additionalProperties":
            out["additionalProperties"] = convert(value) if isinstance(value, dict) else value
        else:
            out[key] = convert(value)
    if "properties" in out:
        if "additionalProperties" not in node:
            out["additionalProperties"] = False
        nullable = [name for name, sub in node["properties"].items() if isinstance(sub, dict) and sub.get("nullable")]
        if nullable:  # sent as null when empty: Stripe's description leaves them out of `required`
            out["required"] = sorted({*out.get("required", []), *nullable})
    if node.get("nullable"):
        if "enum" in out and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
        return {"anyOf": [out, {"type": "null"}]}
    return out


# Nullable fields Stripe leaves out unless expanded (so not "always sent"): since API 2022-11-15 a Charge carries its
# `refunds` list only with `expand[]=refunds` (https://docs.stripe.com/changelog/2022-11-15/deprecates-charges-auto-expand).
INCLUDED_ONLY_WHEN_EXPANDED = {"charge": ("refunds",)}


@functools.cache
def _defs() -> dict[str, Any]:
    defs = {name: convert(schema) for name, schema in description()["components"]["schemas"].items()}
    for name, fields in INCLUDED_ONLY_WHEN_EXPANDED.items():
        defs[name]["required"] = [f for f in defs[name]["required"] if f not in fields]
    return defs


@functools.cache
def _validator(schema_json: str) -> Draft202012Validator:
    schema = {"$defs": _defs(), **json.loads(schema_json)}
    Draft202012Validator.check_schema({"$defs": {}, **json.loads(schema_json)})
    return Draft202012Validator(schema)


def _problems(instance: Any, schema: dict[str, Any]) -> list[str]:
    validator = _validator(json.dumps(schema, sort_keys=True))
    found: list[str] = []
    for error in sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path)):
        found.append(_describe(error))
    return found


def _describe(error: ValidationError) -> str:
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    if error.context:  # anyOf: the branch that got furthest says most
        best = max(error.context, key=lambda e: len(e.absolute_path))
        return f"{where}: {error.message[:200]} ({_describe(best)})"
    return f"{where}: {error.message[:300]}"


def object_problems(obj: Any, schema_name: str) -> list[str]:
    """What is wrong with ``obj`` as a Stripe ``schema_name`` (e.g. ``payment_link``), plus error codes."""
    problems = _problems(obj, {"$ref": f"#/$defs/{schema_name}"})
    return problems + _code_problems(obj)


def response_schema(method: str, path: str, status: int) -> dict[str, Any]:
    """The converted response schema of an operation (``path`` as in the description, e.g. ``{payment_link}``)."""
    responses = description()["paths"][path][method.lower()]["responses"]
    raw = responses["200" if 200 <= status < 300 else "default"]["content"]["application/json"]["schema"]
    return convert(raw)


def response_problems(method: str, path: str, status: int, body: Any) -> list[str]:
    problems = _problems(body, response_schema(method, path, status))
    if isinstance(body, dict) and body.get("object") == "event":
        problems += event_problems(body)
    elif isinstance(body, dict) and body.get("object") == "list":
        for index, item in enumerate(body.get("data") or []):
            if isinstance(item, dict) and item.get("object") == "event":
                problems += [f"data/{index}/{p}" for p in event_problems(item)]
    return problems + _code_problems(body)


def event_problems(event: Any) -> list[str]:
    """The event envelope, its type, and ``data.object`` as the object its type carries."""
    problems = _problems(event, {"$ref": "#/$defs/event"})
    kind = event.get("type") if isinstance(event, dict) else None
    if kind not in event_types():
        problems.append(f"type: {kind!r} is not one of Stripe's event types")
    expected = next((obj for prefix, obj in EVENT_OBJECTS.items() if str(kind).startswith(prefix)), None)
    data = (event.get("data") or {}) if isinstance(event, dict) else {}
    obj = data.get("object")
    if expected is None:
        problems.append(f"type: no schema known for the object of {kind!r} events")
    elif not isinstance(obj, dict) or obj.get("object") != expected:
        problems.append(f"data/object: a {kind} event carries a {expected}, got {(obj or {}).get('object')!r}")
    else:
        problems += [f"data/object/{p}" for p in object_problems(obj, expected)]
        previous = data.get("previous_attributes")
        if previous is not None:
            known = set(description()["components"]["schemas"][expected]["properties"])
            problems += [f"data/previous_attributes: {name!r} is not a {expected} field"
                         for name in sorted(set(previous) - known)]
    return problems


def _code_problems(node: Any, path: str = "") -> list[str]:
    """Every ``code`` next to an error ``type`` (error bodies, ``last_payment_error``...) is a documented one."""
    found: list[str] = []
    if isinstance(node, dict):
        code = node.get("code")
        if isinstance(code, str) and node.get("type") in {"api_error", "card_error", "idempotency_error",
                                                           "invalid_request_error"}:
            if code not in error_codes():
                found.append(f"{path or '(root)'}/code: {code!r} is not in Stripe's documented error codes")
        for key, value in node.items():
            found += _code_problems(value, f"{path}/{key}" if path else key)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _code_problems(value, f"{path}/{index}")
    return found


def spec_path(template: str) -> str:
    """The description's path for a route template with other parameter names (``/v1/payment_links/{id}``)."""
    pattern = re.sub(r"\\\{[^}]*\\\}", r"\\{[^}]+\\}", re.escape(template))
    for path in description()["paths"]:
        if re.fullmatch(pattern, path):
            return path
    raise KeyError(f"{template} is not in the vendored description")
