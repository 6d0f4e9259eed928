"""Conditions as in the Kubernetes API conventions, with kstatus-compatible Ready/Reconciling/Stalled.

Pure functions over lists of condition dicts, as they appear in ``status.conditions``.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

Status = Literal["True", "False", "Unknown"]

# Abnormal-true conditions that kstatus (Flux, Argo CD health) reads: present only while true.
RECONCILING = "Reconciling"
STALLED = "Stalled"
READY = "Ready"


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def timestamp(moment: dt.datetime | None = None) -> str:
    if moment is None:  # the common case, once per webhook delivery: time.strftime costs a quarter of datetime's
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Condition:
    type: str
    status: Status
    reason: str
    message: str


def get(conditions: Iterable[dict[str, Any]] | None, type_: str) -> dict[str, Any] | None:
    for condition in conditions or ():
        if condition.get("type") == type_:
            return condition
    return None


def is_true(conditions: Iterable[dict[str, Any]] | None, type_: str) -> bool:
    found = get(conditions, type_)
    return bool(found and found.get("status") == "True")


def merge(
    existing: Iterable[dict[str, Any]] | None,
    updates: Iterable[Condition],
    *,
    generation: int | None,
    remove: Iterable[str] = (),
    moment: dt.datetime | None = None,
) -> list[dict[str, Any]]:
    """Apply ``updates``; ``lastTransitionTime`` changes only when a condition's status changes.

    ``Ready`` is kept first, the rest in order of first appearance.
    """
    removed = set(remove)
    result: dict[str, dict[str, Any]] = {
        c["type"]: dict(c) for c in existing or () if c.get("type") and c["type"] not in removed
    }
    for update in updates:
        previous = result.get(update.type)
        changed = previous is None or previous.get("status") != update.status
        entry = {
            "type": update.type,
            "status": update.status,
            "reason": update.reason,
            "message": update.message,
            "lastTransitionTime": timestamp(moment) if changed else previous["lastTransitionTime"],
        }
        if generation is not None:
            entry["observedGeneration"] = generation
        result[update.type] = entry
    ordered = sorted(result.values(), key=lambda c: 0 if c["type"] == READY else 1)
    return ordered


def with_kstatus(
    existing: Iterable[dict[str, Any]] | None,
    ready: Condition,
    others: Iterable[Condition] = (),
    *,
    generation: int | None,
    stalled: bool = False,
    reconciling: bool = False,
    moment: dt.datetime | None = None,
) -> list[dict[str, Any]]:
    """Set ``Ready`` and the other conditions, plus Reconciling/Stalled only while they are true."""
    updates = [ready, *others]
    remove = []
    if reconciling:
        updates.append(Condition(RECONCILING, "True", ready.reason, ready.message))
    else:
        remove.append(RECONCILING)
    if stalled:
        updates.append(Condition(STALLED, "True", ready.reason, ready.message))
    else:
        remove.append(STALLED)
    return merge(existing, updates, generation=generation, remove=remove, moment=moment)
