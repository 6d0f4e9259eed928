"""``x-kubernetes-validations`` (CEL) rules evaluated with cel-python.

cel-python implements the CEL core language but not the Kubernetes CEL
libraries (``isURL``, ``quantity``, ``lowerAscii``, ``optional`` types, ...).
Rules that cel-python cannot compile, or that call a function it lacks, are
skipped and recorded in :attr:`CelRules.skipped` (and logged once per rule);
see docs/sandbox.md, "CEL rules the emulator does not enforce".
"""

from __future__ import annotations

import collections
import datetime
import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

import celpy
import celpy.celtypes as ct

from fluxrate_sandbox.kube_schema import Cause, field_path

logger = logging.getLogger(__name__)

# Functions and macros cel-python provides (receiver-style or global).
_KNOWN_FUNCTIONS = {
    "has", "all", "exists", "exists_one", "map", "filter", "size", "contains", "endsWith", "startsWith",
    "matches", "getDate", "getDayOfMonth", "getDayOfWeek", "getDayOfYear", "getFullYear", "getMonth",
    "getHours", "getMilliseconds", "getMinutes", "getSeconds", "bool", "bytes", "double", "duration",
    "int", "list", "string", "timestamp", "uint", "type", "dyn",
}
_WARNED: set[tuple[str, str, str]] = set()
_CALL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(")
_STRING = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")


@dataclass
class SkippedRule:
    crd: str
    path: str
    rule: str
    reason: str


@dataclass
class _Rule:
    rule: str
    message: str | None
    field_path: str | None
    reason: str | None
    transition: bool
    program: Any
    message_program: Any = None


@dataclass
class CelRules:
    """Compiled rules of one schema, keyed by the id() of the schema node carrying them."""

    crd: str
    rules: dict[int, list[_Rule]] = field(default_factory=dict)
    skipped: list[SkippedRule] = field(default_factory=list)
    # CEL is deterministic: a rule given the same self (and oldSelf) gives the same result. cel-python's
    # interpreter takes about 0.7 ms per rule, so results are remembered for the inputs last seen.
    results: collections.OrderedDict[tuple[int, str, str], Any] = field(default_factory=collections.OrderedDict)
    results_size: int = 4096

    @property
    def declared(self) -> bool:
        """Whether the schema declares any rule (the real server then has a CEL validator for it)."""
        return bool(self.rules or self.skipped)

    @classmethod
    def compile(cls, crd: str, schema: dict[str, Any] | None) -> CelRules:
        result = cls(crd=crd)
        if schema:
            result._compile_node(schema, "")
        return result

    def _compile_node(self, schema: dict[str, Any], path: str) -> None:
        for spec in schema.get("x-kubernetes-validations") or []:
            rule = spec.get("rule", "")
            reason = _unsupported(rule)
            program = None
            if reason is None:
                try:
                    env = celpy.Environment()
                    program = env.program(env.compile(rule))
                except Exception as e:
                    reason = f"cel-python cannot compile it: {type(e).__name__}: {str(e).splitlines()[0]}"
            if reason is not None or program is None:
                self._skip(path, rule, reason or "cannot compile")
                continue
            self.rules.setdefault(id(schema), []).append(_Rule(
                rule=rule, message=spec.get("message"), field_path=spec.get("fieldPath"),
                reason=spec.get("reason"), transition=bool(re.search(r"\boldSelf\b", rule)), program=program,
                message_program=self._compile_message(spec.get("messageExpression"), path),
            ))
        for key, sub in (schema.get("properties") or {}).items():
            self._compile_node(sub, f"{path}.{key}")
        if isinstance(schema.get("additionalProperties"), dict):
            self._compile_node(schema["additionalProperties"], f"{path}[*]")
        if isinstance(schema.get("items"), dict):
            self._compile_node(schema["items"], f"{path}[*]")

    def _compile_message(self, expression: str | None, path: str) -> Any:
        if not expression:
            return None
        reason = _unsupported(expression)
        if reason is None:
            try:
                env = celpy.Environment()
                return env.program(env.compile(expression))
            except Exception as e:
                reason = f"cel-python cannot compile it: {type(e).__name__}"
        self._skip(path, expression, f"messageExpression {reason}; the static message is used")
        return None

    def _skip(self, path: str, rule: str, reason: str) -> None:
        skipped = SkippedRule(self.crd, path or "<root>", rule, reason)
        if skipped not in self.skipped:
            self.skipped.append(skipped)
        if (skipped.crd, skipped.path, rule) not in _WARNED:  # once per rule per process, not per CRD apply
            _WARNED.add((skipped.crd, skipped.path, rule))
            logger.warning("CEL rule not enforced by the sandbox (%s at %s): %r: %s",
                           self.crd, skipped.path, rule, reason)

    def validate(self, schema: dict[str, Any] | None, new: Any, old: Any | None) -> list[Cause]:
        causes: list[Cause] = []
        if schema and self.rules:
            self._walk(schema, new, old, old is not None, (), causes)
        return causes

    @staticmethod
    def _message(rule: _Rule, activation: dict[str, Any]) -> str:
        return _evaluated_message(rule, activation) or rule.message or f"failed rule: {rule.rule}"

    def _walk(self, schema: dict[str, Any], new: Any, old: Any, has_old: bool,
              path: tuple[Any, ...], causes: list[Cause], unchanged: bool | None = None) -> None:
        rules = self.rules.get(id(schema), [])
        if unchanged is None:
            unchanged = has_old and new == old
        for rule in rules:
            if rule.transition and not has_old:
                continue  # transition rules only run on updates where oldSelf exists
            if unchanged and not rule.transition:
                # Validation ratcheting (KEP-4008, on by default since Kubernetes 1.30): a value the update left
                # as it was is not re-validated by rules without oldSelf. A status write skips the spec's rules.
                continue
            key = (id(rule), _canonical(new), _canonical(old) if rule.transition else "")
            result = self.results.get(key)
            if result is True:
                self.results.move_to_end(key)
                continue
            activation = {"self": to_cel(new, schema)}
            if rule.transition:
                activation["oldSelf"] = to_cel(old, schema)
            if result is not None:
                self.results.move_to_end(key)
            else:
                try:
                    result = rule.program.evaluate(activation)
                except celpy.CELEvalError as e:
                    result = e
                except Exception as e:
                    self._skip(field_path(path), rule.rule, f"cel-python failed to evaluate it: {e!r}")
                    continue
                self.results[key] = True if result is True or (isinstance(result, ct.BoolType) and bool(result)) \
                    else result
                if len(self.results) > self.results_size:
                    self.results.popitem(last=False)
            if isinstance(result, celpy.CELEvalError):
                text = str(result.args[0]) if result.args else repr(result)
                if "undeclared reference" in text and "function" in text.lower():
                    self._skip(field_path(path), rule.rule, "uses a function cel-python lacks")
                    continue
                causes.append(Cause(field_path(path), "FieldValueInvalid",
                                    f'Invalid value: "{schema.get("type", "object")}": '
                                    f"evaluation error: {text.splitlines()[0][:200]}"))
                continue
            if not bool(result):
                message = self._message(rule, activation)
                where = field_path(path)
                if rule.field_path:
                    where = (where + rule.field_path) if where else rule.field_path.lstrip(".")
                reason = rule.reason or "FieldValueInvalid"
                if reason == "FieldValueInvalid":
                    text = f'Invalid value: "{schema.get("type", "object")}": {message}'
                elif reason == "FieldValueRequired":
                    text = f"Required value: {message}"
                elif reason == "FieldValueForbidden":
                    text = f"Forbidden: {message}"
                else:
                    text = f"Duplicate value: {message}"
                causes.append(Cause(where, reason, text))

        if isinstance(new, dict):
            props: dict[str, Any] = schema.get("properties") or {}
            additional = schema.get("additionalProperties")
            for key, value in new.items():
                sub = props.get(key) or (additional if isinstance(additional, dict) else None)
                if sub is None or (not path and key in ("apiVersion", "kind", "metadata")):
                    continue
                child_has_old = has_old and isinstance(old, dict) and key in old
                self._walk(sub, value, old.get(key) if child_has_old else None, child_has_old,
                           (*path, key), causes, True if unchanged else None)
        elif isinstance(new, list) and isinstance(schema.get("items"), dict):
            items = schema["items"]
            keys = schema.get("x-kubernetes-list-map-keys") if schema.get("x-kubernetes-list-type") == "map" else None
            old_by_key: dict[tuple[Any, ...], Any] = {}
            if keys and has_old and isinstance(old, list):
                old_by_key = {tuple(o.get(k) for k in keys): o for o in old if isinstance(o, dict)}
            for index, value in enumerate(new):
                old_item = None
                if keys and isinstance(value, dict):
                    old_item = old_by_key.get(tuple(value.get(k) for k in keys))
                self._walk(items, value, old_item, old_item is not None, (*path, index), causes,
                           True if unchanged and old_item is not None else None)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _evaluated_message(rule: _Rule, activation: dict[str, Any]) -> str | None:
    if rule.message_program is None:
        return None
    try:
        result = rule.message_program.evaluate(activation)
    except Exception:
        return None
    # As the real server: an empty, non-string or failing messageExpression falls back to the message.
    return str(result) if isinstance(result, str) and str(result).strip() else None


def _unsupported(rule: str) -> str | None:
    code = _STRING.sub("''", rule)
    if "?." in code or "?[" in code:
        return "uses optional field selection (?.), which cel-python does not support"
    for name in _CALL.findall(code):
        if name not in _KNOWN_FUNCTIONS:
            return f"calls {name}(), a Kubernetes CEL library function cel-python does not provide"
    return None


def to_cel(value: Any, schema: dict[str, Any] | None) -> Any:
    """JSON to CEL, honouring ``format: date-time|duration`` as Kubernetes does."""
    schema = schema or {}
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        return ct.MapType({
            ct.StringType(k): to_cel(v, props.get(k) or (additional if isinstance(additional, dict) else None))
            for k, v in value.items()
        })
    if isinstance(value, list):
        return ct.ListType([to_cel(v, schema.get("items")) for v in value])
    if isinstance(value, str):
        fmt = schema.get("format")
        if fmt == "date-time":
            try:
                return ct.TimestampType(datetime.datetime.fromisoformat(value.replace("Z", "+00:00")))
            except ValueError:
                return ct.StringType(value)
        if fmt == "duration":
            try:
                return ct.DurationType(value)
            except ValueError:
                return ct.StringType(value)
    return celpy.json_to_cel(value)
