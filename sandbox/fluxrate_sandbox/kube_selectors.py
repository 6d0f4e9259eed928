"""Label selectors, field selectors and the JSONPath subset used by printer columns."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class SelectorError(ValueError):
    pass


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # '=', '!=', 'in', 'notin', 'exists', '!exists'
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        match self.op:
            case "exists":
                return self.key in labels
            case "!exists":
                return self.key not in labels
            case "=" | "in":
                return self.key in labels and labels[self.key] in self.values
            case "!=" | "notin":
                return self.key not in labels or labels[self.key] not in self.values
        raise AssertionError(self.op)


_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def _split_top(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def parse_label_selector(text: str | None) -> list[Requirement]:
    requirements: list[Requirement] = []
    for part in _split_top(text or ""):
        if m := re.fullmatch(r"(\S+)\s+(in|notin)\s*\(([^)]*)\)", part):
            key, op, values = m.group(1), m.group(2), tuple(v.strip() for v in m.group(3).split(",") if v.strip())
            requirements.append(Requirement(key, op, values))
        elif m := re.fullmatch(r"(\S+?)\s*(==|!=|=)\s*(\S*)", part):
            op = "!=" if m.group(2) == "!=" else "="
            requirements.append(Requirement(m.group(1), op, (m.group(3),)))
        elif m := re.fullmatch(r"!\s*(\S+)", part):
            requirements.append(Requirement(m.group(1), "!exists"))
        elif re.fullmatch(r"\S+", part):
            requirements.append(Requirement(part, "exists"))
        else:
            raise SelectorError(f"unable to parse requirement: {part!r}")
    for requirement in requirements:
        if not _LABEL_KEY.match(requirement.key):
            raise SelectorError(f"unable to parse requirement: invalid label key {requirement.key!r}")
    return requirements


def labels_match(requirements: list[Requirement], obj: dict[str, Any]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(r.matches(labels) for r in requirements)


@dataclass(frozen=True)
class FieldRequirement:
    path: str
    negate: bool
    value: str

    def matches(self, obj: dict[str, Any]) -> bool:
        current: Any = obj
        for part in self.path.split("."):
            current = current.get(part) if isinstance(current, dict) else None
        text = "" if current is None else str(current).lower() if isinstance(current, bool) else str(current)
        return (text != self.value) if self.negate else (text == self.value)


def parse_field_selector(text: str | None, supported: set[str]) -> list[FieldRequirement]:
    result: list[FieldRequirement] = []
    for part in _split_top(text or ""):
        m = re.fullmatch(r"([^=!]+?)\s*(==|!=|=)\s*(.*)", part)
        if not m:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{part}'")
        path = m.group(1)
        if path not in supported:
            raise SelectorError(f'field label not supported: {path}')
        result.append(FieldRequirement(path, m.group(2) == "!=", m.group(3)))
    return result


def fields_match(requirements: list[FieldRequirement], obj: dict[str, Any]) -> bool:
    return all(r.matches(obj) for r in requirements)


# --------------------------------------------------------------------------------------------------
# A small JSONPath evaluator: .a.b, [0], [*], ['x'], [?(@.k=="v")], [?(@.k!="v")], [?(@.k)]

_TOKEN = re.compile(
    r"""\.\.?(?P<name>[A-Za-z0-9_\-$/]+)|\[(?P<index>-?\d+)\]|\[\*\]|\.\*|\[['"](?P<quoted>[^'"]+)['"]\]"""
    r"""|\[\?\(@(?P<fpath>(?:\.[A-Za-z0-9_\-]+)+)\s*(?:(?P<fop>==|!=)\s*(?P<fval>"[^"]*"|'[^']*'|[^)\s]+))?\)\]"""
)


def compile_jsonpath(expr: str) -> Callable[[Any], list[Any]]:
    text = expr.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    text = text.removeprefix("$")
    steps: list[Callable[[Any], list[Any]]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise SelectorError(f"unsupported JSONPath: {expr}")
        pos = m.end()
        steps.append(_step(m))

    def evaluate(obj: Any) -> list[Any]:
        current = [obj]
        for step in steps:
            current = [out for item in current for out in step(item)]
        return current

    return evaluate


def _step(m: re.Match[str]) -> Callable[[Any], list[Any]]:
    if m.group("name") is not None or m.group("quoted") is not None:
        name = m.group("name") if m.group("name") is not None else m.group("quoted")
        return lambda item: [item[name]] if isinstance(item, dict) and name in item else []
    if m.group("index") is not None:
        index = int(m.group("index"))
        return lambda item: [item[index]] if isinstance(item, list) and -len(item) <= index < len(item) else []
    if m.group("fpath") is not None:
        keys = m.group("fpath").strip(".").split(".")
        op, raw = m.group("fop"), m.group("fval")
        expected: Any = None
        if raw is not None:
            expected = raw[1:-1] if raw[:1] in "\"'" else (int(raw) if raw.lstrip("-").isdigit() else raw)

        def value_of(item: Any) -> tuple[bool, Any]:
            for key in keys:
                if not isinstance(item, dict) or key not in item:
                    return False, None
                item = item[key]
            return True, item

        def filt(item: Any) -> list[Any]:
            if not isinstance(item, list):
                return []
            out = []
            for element in item:
                found, value = value_of(element)
                if (op is None and found) or (op == "==" and found and value == expected) or \
                        (op == "!=" and (not found or value != expected)):
                    out.append(element)
            return out

        return filt

    def wildcard(item: Any) -> list[Any]:
        if isinstance(item, list):
            return list(item)
        if isinstance(item, dict):
            return list(item.values())
        return []

    return wildcard
