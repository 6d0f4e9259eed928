"""Request-path parsing and patch helpers of the Kubernetes API emulator."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any


@dataclass
class ParsedPath:
    group: str | None = None  # None: not an API resource path
    version: str | None = None
    namespace: str | None = None
    plural: str | None = None
    name: str | None = None
    subresource: str | None = None


def parse_path(path: str) -> ParsedPath:
    parts = [p for p in path.strip("/").split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return ParsedPath()
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces" and not (len(rest) == 3 and rest[2] in ("status", "finalize")):
        namespace, rest = rest[1], rest[2:]
    return ParsedPath(group, version, namespace,
                      rest[0] if rest else None, rest[1] if len(rest) > 1 else None, "/".join(rest[2:]) or None)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strip_directives(patch: Any) -> Any:
    """Strategic-merge-patch directives ($patch, $setElementOrder/..., $retainKeys) are dropped."""
    if isinstance(patch, dict):
        return {k: strip_directives(v) for k, v in patch.items() if not k.startswith("$")}
    if isinstance(patch, list):
        return [strip_directives(v) for v in patch if not (isinstance(v, dict) and "$patch" in v)]
    return patch


# The lists the real server merges (patchStrategy "merge") in the built-in kinds the emulator serves, by path:
# their patchMergeKey, or "" for a list of scalars merged as a set. Every other list is replaced.
MERGE_LISTS: dict[tuple[str, ...], str] = {("metadata", "ownerReferences"): "uid", ("metadata", "finalizers"): ""}


class PatchError(ValueError):
    """A strategic merge patch the real server refuses (a 500 there, as apimachinery's errors are plain)."""


def strategic_merge_patch(target: Any, patch: dict[str, Any]) -> Any:
    """apimachinery's strategic merge patch for the built-in kinds: maps merge (null deletes), lists in
    ``MERGE_LISTS`` merge by key, with the ``$patch``, ``$retainKeys``, ``$deleteFromPrimitiveList/`` and
    ``$setElementOrder/`` directives."""
    return _smp_map(target if isinstance(target, dict) else {}, patch, ())


def _smp_map(target: dict[str, Any], patch: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any] | None:
    directive = patch.get("$patch")
    if directive == "replace":
        return strip_directives(patch)  # type: ignore[no-any-return]
    if directive == "delete":
        return None
    result = copy.deepcopy(target)
    if isinstance(patch.get("$retainKeys"), list):
        result = {k: v for k, v in result.items() if k in patch["$retainKeys"]}
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/") and isinstance(result.get(key.split("/", 1)[1]), list):
            field = key.split("/", 1)[1]
            result[field] = [v for v in result[field] if v not in (value or [])]
    for key, value in patch.items():
        if not key.startswith("$"):
            _smp_field(result, key, value, patch.get(f"$setElementOrder/{key}"), (*path, key))
    return result


def _smp_field(result: dict[str, Any], key: str, value: Any, order: Any, path: tuple[str, ...]) -> None:
    merged: Any
    if value is None:
        merged = None
    elif isinstance(value, dict):
        merged = _smp_map(result[key] if isinstance(result.get(key), dict) else {}, value, path)
    elif isinstance(value, list) and path in MERGE_LISTS:
        current = result.get(key)
        merged = _smp_list(current if isinstance(current, list) else [], value, MERGE_LISTS[path], order)
    else:
        merged = strip_directives(value)
    if merged is None:
        result.pop(key, None)
    else:
        result[key] = merged


def _smp_list(original: list[Any], patch: list[Any], key: str, order: Any) -> list[Any]:
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return strip_directives(patch)  # type: ignore[no-any-return]
    if key:
        merged = _merge_maps_by_key(original, patch, key)

        def ident(item: Any) -> Any:
            return item.get(key) if isinstance(item, dict) else item
    else:
        merged = []
        for item in original + patch:
            if item not in merged:
                merged.append(item)

        def ident(item: Any) -> Any:
            return item
    wanted = [ident(i) for i in (order if isinstance(order, list) and order else patch)
              if not (isinstance(i, dict) and i.get("$patch") == "delete")]
    in_patch = sorted((m for m in merged if ident(m) in wanted), key=lambda m: wanted.index(ident(m)))
    server_only = [m for m in merged if ident(m) not in wanted]
    return _merge_sorted(server_only, in_patch, [ident(o) for o in original], ident)


def _merge_maps_by_key(original: list[Any], patch: list[Any], key: str) -> list[Any]:
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            shown = " ".join(f"{k}:{v}" for k, v in sorted(item.items())) if isinstance(item, dict) else item
            raise PatchError(f"map: map[{shown}] does not contain declared merge key: {key}")
    deleted = {item[key] for item in patch if item.get("$patch") == "delete"}
    merged = [copy.deepcopy(o) for o in original if not (isinstance(o, dict) and o.get(key) in deleted)]
    for item in patch:
        if item.get("$patch") == "delete":
            continue
        at = next((n for n, o in enumerate(merged) if isinstance(o, dict) and o.get(key) == item[key]), None)
        if at is None:
            merged.append(strip_directives(item))
        else:
            merged[at] = _smp_map(merged[at], item, ())
    return merged


def _merge_sorted(server_only: list[Any], in_patch: list[Any], server_order: list[Any],
                  ident: Any) -> list[Any]:
    """apimachinery's mergeSortedSlice: a server-only item goes first only when both are in the server's order
    and it comes first there; otherwise the patch's item does."""
    out: list[Any] = []
    i = j = 0
    while i < len(server_only) or j < len(in_patch):
        if j >= len(in_patch):
            out.append(server_only[i])
            i += 1
        elif i >= len(server_only):
            out.append(in_patch[j])
            j += 1
        else:
            left, right = ident(server_only[i]), ident(in_patch[j])
            if left in server_order and right in server_order and server_order.index(left) < server_order.index(right):
                out.append(server_only[i])
                i += 1
            else:
                out.append(in_patch[j])
                j += 1
    return out
