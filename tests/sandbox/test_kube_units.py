"""Pure helpers of the Kubernetes API emulator: selectors, JSONPath, durations, merge patch, CEL, schemas.

No server runs here (so no backend applies); what these helpers produce is checked against the real server by
test_kube_api/test_kube_watch/test_kube_clients."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fluxrate_sandbox.kube_cel import CelRules
from fluxrate_sandbox.kube_paths import merge_patch, parse_path
from fluxrate_sandbox.kube_resources import human_duration
from fluxrate_sandbox.kube_schema import SchemaValidator, apply_defaults, prune
from fluxrate_sandbox.kube_selectors import (
    SelectorError,
    compile_jsonpath,
    labels_match,
    parse_label_selector,
)


@pytest.mark.parametrize(("selector", "labels", "expected"), [
    ("a=1", {"a": "1"}, True),
    ("a=1", {"a": "2"}, False),
    ("a!=1", {}, True),
    ("a in (1, 2),b", {"a": "2", "b": ""}, True),
    ("a notin (1,2)", {"a": "3"}, True),
    ("!a", {"a": "3"}, False),
    ("", {"x": "y"}, True),
])
def test_label_selector(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert labels_match(parse_label_selector(selector), {"metadata": {"labels": labels}}) is expected


def test_label_selector_rejects_garbage() -> None:
    with pytest.raises(SelectorError):
        parse_label_selector("a in b c")


@pytest.mark.parametrize(("path", "expected"), [
    (".status.phase", ["Ready"]),
    ('.status.conditions[?(@.type=="Ready")].status', ["True"]),
    (".status.conditions[0].type", ["Synced"]),
    (".status.conditions[*].type", ["Synced", "Ready"]),
    ("{.metadata.name}", ["x"]),
    (".spec.missing", []),
])
def test_jsonpath(path: str, expected: list[Any]) -> None:
    obj = {"metadata": {"name": "x"}, "status": {"phase": "Ready", "conditions": [
        {"type": "Synced", "status": "False"}, {"type": "Ready", "status": "True"}]}}
    assert compile_jsonpath(path)(obj) == expected


@pytest.mark.parametrize(("seconds", "text"), [
    (5, "5s"), (119, "119s"), (150, "2m30s"), (600, "10m"), (3 * 3600 + 60, "3h1m"), (30 * 3600, "30h"),
    (3 * 86400 + 3600, "3d1h"), (40 * 86400, "40d"), (-5, "<invalid>"),
])
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_parse_path() -> None:
    assert parse_path("/api/v1/namespaces").plural == "namespaces"
    p = parse_path("/api/v1/namespaces/ns1")
    assert (p.plural, p.name, p.namespace) == ("namespaces", "ns1", None)
    p = parse_path("/api/v1/namespaces/ns1/status")
    assert (p.plural, p.name, p.subresource) == ("namespaces", "ns1", "status")
    p = parse_path("/apis/g.io/v1/namespaces/ns/things/x/status")
    assert (p.group, p.version, p.namespace, p.plural, p.name, p.subresource) == ("g.io", "v1", "ns", "things",
                                                                                    "x", "status")
    assert parse_path("/version").group is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda children: st.dictionaries(st.text(max_size=2), children, max_size=3), max_leaves=8)


@given(json_values, json_values)
def test_merge_patch_is_idempotent(target: Any, patch: Any) -> None:
    once = merge_patch(target, patch)
    assert merge_patch(once, patch) == once


def test_merge_patch_rfc7386_example() -> None:
    target = {"title": "Goodbye!", "author": {"givenName": "John", "familyName": "Doe"}, "tags": ["a", "b"]}
    patch = {"title": "Hello!", "phoneNumber": "+01-123-456-7890", "author": {"familyName": None}, "tags": ["c"]}
    assert merge_patch(target, patch) == {"title": "Hello!", "author": {"givenName": "John"}, "tags": ["c"],
                                          "phoneNumber": "+01-123-456-7890"}


SCHEMA: dict[str, Any] = {"type": "object", "properties": {"spec": {"type": "object", "properties": {
    "n": {"type": "integer", "default": 1},
    "items": {"type": "array", "items": {"type": "object", "properties": {"k": {"type": "string", "default": "d"}}}},
    "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    "when": {"type": "string", "format": "date-time"},
}}}}


def test_prune_and_default_nested() -> None:
    obj = {"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "a"}, "junk": 1,
           "spec": {"items": [{"z": 1}, {"k": "v"}], "free": {"any": {"thing": 1}}, "n": None}}
    pruned: list[str] = []
    prune(obj, SCHEMA, root=True, pruned=pruned)
    apply_defaults(obj, SCHEMA, root=True)
    assert pruned == ["junk", "spec.items[0].z"]
    assert obj["spec"] == {"items": [{"k": "d"}, {"k": "v"}], "free": {"any": {"thing": 1}}, "n": 1}
    assert obj["metadata"] == {"name": "a"}


def test_date_time_format() -> None:
    validator = SchemaValidator(SCHEMA)
    assert validator.validate({"spec": {"when": "2026-01-02T03:04:05Z"}}) == []
    [cause] = validator.validate({"spec": {"when": "yesterday"}})
    assert cause.field == "spec.when" and "must be of type date-time" in cause.message


def test_schema_validation_ratchets_unchanged_fields() -> None:
    """An update is not refused for a top-level field it left as it was (KEP-4008); a changed one is validated."""
    schema = {"type": "object", "required": ["spec"], "properties": {
        "spec": {"type": "object", "properties": {"when": {"type": "string", "format": "date-time"}}},
        "status": {"type": "object", "properties": {"n": {"type": "integer"}}}}}
    validator = SchemaValidator(schema)
    old = {"spec": {"when": "yesterday"}, "status": {"n": 1}}  # stored before the format was enforced
    assert validator.validate({"spec": {"when": "yesterday"}, "status": {"n": 2}}, old) == []
    [cause] = validator.validate({"spec": {"when": "yesterday"}, "status": {"n": "x"}}, old)
    assert cause.field == "status.n"
    [cause] = validator.validate({"spec": {"when": "today"}, "status": {"n": 1}}, old)
    assert cause.field == "spec.when"
    [cause] = validator.validate({"status": {"n": 1}}, old)  # a required field removed: the whole object
    assert (cause.field, cause.reason) == ("spec", "FieldValueRequired")


def test_cel_rules_compile_skip_and_evaluate() -> None:
    schema = {"type": "object", "properties": {"spec": {
        "type": "object",
        "x-kubernetes-validations": [
            {"rule": "self.max >= self.min", "message": "max below min", "fieldPath": ".max"},
            {"rule": "self.name.lowerAscii() == self.name"},
            {"rule": "self.min == oldSelf.min", "reason": "FieldValueForbidden", "message": "min is immutable"},
            {"rule": "self.min < 100", "messageExpression": "'min ' + string(self.min) + ' is too big'"},
        ],
        "properties": {"min": {"type": "integer"}, "max": {"type": "integer"}, "name": {"type": "string"}},
    }}}
    rules = CelRules.compile("things.example.com", schema)
    assert [(s.path, s.rule) for s in rules.skipped] == [(".spec", "self.name.lowerAscii() == self.name")]
    assert rules.validate(schema, {"spec": {"min": 1, "max": 2, "name": "a"}}, None) == []
    [cause] = rules.validate(schema, {"spec": {"min": 3, "max": 2, "name": "a"}}, None)
    assert (cause.field, cause.message) == ("spec.max", 'Invalid value: "object": max below min')
    [cause] = rules.validate(schema, {"spec": {"min": 2, "max": 5}}, {"spec": {"min": 1, "max": 5}})
    assert (cause.field, cause.reason, cause.message) == ("spec", "FieldValueForbidden", "Forbidden: min is immutable")
    [cause] = rules.validate(schema, {"spec": {"min": 100, "max": 200}}, None)
    assert cause.message == 'Invalid value: "object": min 100 is too big'


def test_cel_rules_ratchet_unchanged_values_but_not_transition_rules() -> None:
    """Validation ratcheting (Kubernetes >= 1.30): a value an update leaves unchanged is not re-validated by rules
    without oldSelf (a CRD tightened later does not block status writes); changed values and transition rules are."""
    schema = {"type": "object", "properties": {
        "spec": {"type": "object", "x-kubernetes-validations": [
            {"rule": "self.min < 10", "message": "min too big"},
            {"rule": "self.min == oldSelf.min", "message": "min is immutable"},
        ], "properties": {"min": {"type": "integer"}}},
        "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
    }}
    rules = CelRules.compile("things.example.com", schema)
    old = {"spec": {"min": 50}, "status": {"phase": "A"}}  # valid when written, before the rule was added
    assert rules.validate(schema, {"spec": {"min": 50}, "status": {"phase": "B"}}, old) == []
    assert [c.message for c in rules.validate(schema, {"spec": {"min": 60}}, old)] == [
        'Invalid value: "object": min too big', 'Invalid value: "object": min is immutable']
    assert [c.message for c in rules.validate(schema, {"spec": {"min": 50}}, None)] == [
        'Invalid value: "object": min too big']
