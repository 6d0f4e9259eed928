"""Structural-schema handling of CRD objects: pruning, defaulting, validation.

Mirrors what kube-apiserver does with ``openAPIV3Schema`` of a CRD version:
undeclared fields are pruned (unless ``x-kubernetes-preserve-unknown-fields``),
``null`` in non-nullable fields is dropped, ``default`` values are applied
top-down, and the result is validated.  Validation is delegated to ``jsonschema``
on a translated schema; its errors are re-worded into the messages the real
server produces so that tests can assert on them.
"""

from __future__ import annotations

import ast
import base64
import copy
import datetime
import json
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jsonschema

Json = Any


@dataclass(frozen=True)
class Cause:
    """One entry of ``Status.details.causes``."""

    field: str
    reason: str
    message: str  # without the field prefix, as in the real causes[]

    def render(self) -> str:
        return f"{self.field or '<nil>'}: {self.message}"

    def as_dict(self) -> dict[str, str]:
        return {"reason": self.reason, "message": self.message, "field": self.field or "<nil>"}


def field_path(parts: Iterable[str | int]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def go_value(value: Json) -> str:
    """Render a value as Go's field.Invalid does (approximately)."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return json.dumps(value)
    return json.dumps("object" if isinstance(value, dict) else "array")


def json_type(value: Json) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


# --------------------------------------------------------------------------------------------------
# Pruning & defaulting


def prune(obj: Json, schema: dict[str, Any] | None, *, root: bool = False, path: tuple[Any, ...] = (),
          pruned: list[str] | None = None) -> Json:
    """Drop undeclared fields in place; return the (same) object. Records pruned paths if asked."""
    if schema is None or obj is None:
        return obj
    if isinstance(obj, dict):
        preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
        props: dict[str, Any] = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        embedded = root or bool(schema.get("x-kubernetes-embedded-resource"))
        for key in list(obj):
            if embedded and key in ("apiVersion", "kind", "metadata"):
                continue
            sub: dict[str, Any] | None
            if key in props:
                sub = props[key]
            elif isinstance(additional, dict):
                sub = additional
            elif preserve or additional is True:
                continue
            else:
                if pruned is not None:
                    pruned.append(field_path((*path, key)))
                del obj[key]
                continue
            if obj[key] is None and not sub.get("nullable"):
                del obj[key]  # the real server drops nulls of non-nullable fields silently
                continue
            prune(obj[key], sub, path=(*path, key), pruned=pruned)
    elif isinstance(obj, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for index, item in enumerate(obj):
                prune(item, items, path=(*path, index), pruned=pruned)
    return obj


def apply_defaults(obj: Json, schema: dict[str, Any] | None, *, root: bool = False) -> Json:
    if schema is None or obj is None:
        return obj
    if isinstance(obj, dict):
        props: dict[str, Any] = schema.get("properties") or {}
        for key, sub in props.items():
            if root and key in ("apiVersion", "kind", "metadata"):
                continue
            if key not in obj and "default" in sub:
                obj[key] = copy.deepcopy(sub["default"])
            if key in obj:
                apply_defaults(obj[key], sub)
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict):
            for key in list(obj):
                if key not in props:
                    apply_defaults(obj[key], additional)
    elif isinstance(obj, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for item in obj:
                apply_defaults(item, items)
    return obj


# --------------------------------------------------------------------------------------------------
# Validation

_DROP_KEYS = {"default", "example", "externalDocs", "description", "x-kubernetes-validations"}


def to_json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Translate a Kubernetes structural schema into plain JSON Schema (draft 7)."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _DROP_KEYS or key.startswith("x-kubernetes-") or key == "nullable":
            continue
        if key in ("properties", "patternProperties", "definitions"):
            out[key] = {name: to_json_schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = to_json_schema(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [to_json_schema(sub) for sub in value]
        else:
            out[key] = copy.deepcopy(value)
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("allOf", []).append({"anyOf": [{"type": "integer"}, {"type": "string"}]})
    if schema.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"] if isinstance(out["type"], str) else [*out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_FORMAT_CHECKER = jsonschema.FormatChecker(formats=())


def _check_format(name: str) -> Any:
    return _FORMAT_CHECKER.checks(name, raises=(ValueError, TypeError))


@_check_format("date-time")
def _is_datetime(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not re.match(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$", value):
        raise ValueError(value)
    datetime.datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
    return True


@_check_format("date")
def _is_date(value: object) -> bool:
    if isinstance(value, str):
        datetime.date.fromisoformat(value)
    return True


@_check_format("email")
def _is_email(value: object) -> bool:
    return not isinstance(value, str) or bool(_EMAIL.match(value))


@_check_format("uuid")
def _is_uuid(value: object) -> bool:
    if isinstance(value, str):
        uuid.UUID(value)
    return True


@_check_format("byte")
def _is_byte(value: object) -> bool:
    if isinstance(value, str):
        base64.b64decode(value, validate=True)
    return True


@_check_format("uri")
def _is_uri(value: object) -> bool:
    return not isinstance(value, str) or bool(re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", value))


def _cause(error: jsonschema.ValidationError) -> Cause:
    parts = list(error.absolute_path)
    field = field_path(parts)
    value = error.instance
    shown = go_value(value)
    arg = error.validator_value
    match error.validator:
        case "required":
            missing = error.message.removesuffix(" is a required property")
            try:
                name = ast.literal_eval(missing)
            except (ValueError, SyntaxError):
                name = missing
            return Cause(field_path([*parts, name]), "FieldValueRequired", "Required value")
        case "type":
            expected = arg if isinstance(arg, str) else ",".join(t for t in arg if t != "null")
            actual = json_type(value)
            return Cause(field, "FieldValueTypeInvalid",
                         f'Invalid value: "{actual}": {field} in body must be of type {expected}: "{actual}"')
        case "enum":
            supported = ", ".join(go_value(v) for v in arg if v is not None)
            return Cause(field, "FieldValueNotSupported", f"Unsupported value: {shown}: supported values: {supported}")
        case "pattern":
            return Cause(field, "FieldValueInvalid", f"Invalid value: {shown}: {field} in body should match '{arg}'")
        case "format":
            return Cause(field, "FieldValueInvalid",
                         f"Invalid value: {shown}: {field} in body must be of type {arg}: {shown}")
        case "maxLength":
            return Cause(field, "FieldValueTooLong", f"Too long: may not be more than {arg} bytes")
        case "minLength":
            return Cause(field, "FieldValueInvalid",
                         f"Invalid value: {shown}: {field} in body should be at least {arg} chars long")
        case "maxItems":
            return Cause(field, "FieldValueTooMany", f"Too many: {len(value)}: must have at most {arg} items")
        case "minItems":
            return Cause(field, "FieldValueInvalid",
                         f"Invalid value: {len(value)}: {field} in body should have at least {arg} items")
        case "uniqueItems":
            return Cause(field, "FieldValueDuplicate", f"Duplicate value: {shown}")
        case "maxProperties":
            return Cause(field, "FieldValueTooMany", f"Too many: {len(value)}: must have at most {arg} items")
        case "minProperties":
            return Cause(field, "FieldValueInvalid",
                         f"Invalid value: {len(value)}: {field} in body should have at least {arg} properties")
        case "minimum":
            return Cause(field, "FieldValueInvalid",
                         f"Invalid value: {shown}: {field} in body should be greater than or equal to {arg}")
        case "exclusiveMinimum":
            return Cause(field, "FieldValueInvalid",
                         f"Invalid value: {shown}: {field} in body should be greater than {arg}")
        case "maximum":
            return Cause(field, "FieldValueInvalid",
                         f"Invalid value: {shown}: {field} in body should be less than or equal to {arg}")
        case "exclusiveMaximum":
            return Cause(field, "FieldValueInvalid",
                         f"Invalid value: {shown}: {field} in body should be less than {arg}")
        case "multipleOf":
            return Cause(field, "FieldValueInvalid",
                         f"Invalid value: {shown}: {field} in body should be a multiple of {arg}")
        case _:
            return Cause(field, "FieldValueInvalid", f"Invalid value: {shown}: {error.message}")


SERVER_FIELDS = ("apiVersion", "kind", "metadata")  # validated by the server itself, not by the CRD schema


class SchemaValidator:
    """Compiled validator for one CRD version's openAPIV3Schema."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        translated = to_json_schema(schema)
        # apiVersion/kind/metadata are validated by the server itself, not by the CRD schema.
        for key in ("apiVersion", "kind", "metadata"):
            translated.get("properties", {}).pop(key, None)
        self._validator = jsonschema.Draft7Validator(translated, format_checker=_FORMAT_CHECKER)
        self._properties: dict[str, Any] = translated.get("properties") or {}
        self._by_property: dict[str, jsonschema.Draft7Validator] = {}

    def _property_validator(self, key: str) -> jsonschema.Draft7Validator:
        if key not in self._by_property:
            self._by_property[key] = jsonschema.Draft7Validator(self._properties[key], format_checker=_FORMAT_CHECKER)
        return self._by_property[key]

    def validate(self, obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[Cause]:
        """Causes of ``obj`` being invalid. With ``old`` (an update), a top-level field left unchanged is not
        validated again (validation ratcheting, KEP-4008: on by default since Kubernetes 1.30)."""
        body = {k: v for k, v in obj.items() if k not in SERVER_FIELDS}
        required = self._validator.schema.get("required") or []
        if old is None or any(key not in body for key in required):
            errors = list(self._validator.iter_errors(body))
        else:
            errors = []
            for key, value in body.items():
                if old.get(key) == value or key not in self._properties:
                    continue
                for error in self._property_validator(key).iter_errors(value):
                    error.path.appendleft(key)
                    errors.append(error)
        errors.sort(key=lambda e: [str(p) for p in e.absolute_path])
        causes: list[Cause] = []
        for error in errors:
            for leaf in _leaves(error):
                cause = _cause(leaf)
                if cause not in causes:
                    causes.append(cause)
        return causes


def _leaves(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    # allOf (from int-or-string) wraps the real error; report the innermost ones.
    if error.validator in ("allOf",) and error.context:
        return [leaf for sub in error.context for leaf in _leaves(sub)]
    if error.validator == "anyOf" and error.context:
        types = [sub.validator_value for sub in error.context if sub.validator == "type"]
        if len(types) == len(error.context):
            clone = copy.copy(error)
            clone.validator = "type"
            clone.validator_value = "integer,string" if set(types) == {"integer", "string"} else ",".join(types)
            return [clone]
    return [error]
