"""Invoice status transitions shared by the operator and the receiver: phases only move forward.

Every invoice status write is read-modify-write of the latest object, guarded by its resourceVersion,
so concurrent writers (operator, receiver replicas, reconciliation timer) never undo each other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from fluxrate.kube import Kube

PLURAL = "invoices"

# Where each phase may go. A payment Stripe reported is recorded even on a Void invoice, and a paid invoice never
# goes back to being payable: Paid and Refunded only move between each other (a full refund, or a lost dispute;
# and back when such a refund fails or is canceled, so its money did not go back after all).
NEXT_PHASES: dict[str, frozenset[str]] = {
    "Draft": frozenset({"Finalized", "Open", "Failed", "Void", "Paid"}),
    "Finalized": frozenset({"Open", "Failed", "Void", "Paid"}),
    "Open": frozenset({"Void", "Paid"}),
    "Failed": frozenset({"Void", "Paid"}),
    "Void": frozenset({"Paid"}),
    "Paid": frozenset({"Refunded"}),
    "Refunded": frozenset({"Paid"}),
}
PAID_PHASES = frozenset({"Paid", "Refunded"})  # the invoice was paid (and maybe refunded since)


def is_paid(phase: str | None) -> bool:
    return phase in PAID_PHASES


class InvoiceGone(LookupError):
    """The invoice does not exist (any more)."""


class ConflictPersisted(RuntimeError):
    """The invoice kept changing under us; the caller should report a temporary failure."""


def can_move(current: str | None, new: str) -> bool:
    return current is None or current == new or new in NEXT_PHASES[current]


Mutation = Callable[[dict[str, Any]], dict[str, Any] | None]


async def update_status(
    kube: Kube, namespace: str, name: str, mutate: Mutation, *, attempts: int = 8, initial: dict[str, Any] | None = None
) -> tuple[dict[str, Any], bool]:
    """Merge-patch ``mutate(latest object)`` (status changes, None for no write) with optimistic concurrency.

    Returns (the object as written or read, whether a write happened). ``mutate`` must be pure: it is
    called again on the fresh object after a conflict. A phase downgrade raises ValueError.
    """
    obj = initial
    for attempt in range(attempts):
        if obj is None:
            obj = await kube.get_object(PLURAL, namespace, name)
            if obj is None:
                raise InvoiceGone(f"invoice {namespace}/{name} not found")
        changes = mutate(obj)
        if changes is None:
            return obj, False
        current_phase = (obj.get("status") or {}).get("phase")
        if "phase" in changes and not can_move(current_phase, changes["phase"]):
            raise ValueError(f"refusing to move invoice {namespace}/{name} from {current_phase} to {changes['phase']}")
        try:
            written = await kube.patch_status(
                PLURAL, namespace, name, changes, resource_version=obj["metadata"]["resourceVersion"]
            )
            return written, True
        except ApiException as exc:
            if exc.status == 404:
                raise InvoiceGone(f"invoice {namespace}/{name} not found") from None
            if exc.status != 409:
                raise
        obj = None
        await asyncio.sleep(min(0.05 * 2**attempt, 1.0))
    raise ConflictPersisted(f"invoice {namespace}/{name} changed {attempts} times while being updated")
