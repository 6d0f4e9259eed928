"""The invoice object a reconcile works on, and its status writes: every one goes through
``invoice_status.update_status`` (read latest, compute, write with the resourceVersion), so nothing here can turn
a Paid invoice back."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fluxrate import conditions as cond
from fluxrate.invoice_status import is_paid, update_status
from fluxrate.kube import Kube
from fluxrate.operator.settings import OperatorSettings
from fluxrate.operator.stripe_clients import StripeClients

# The status fields to set, or a function computing them from the latest status (None: write nothing).
Values = Mapping[str, Any] | Callable[[Mapping[str, Any]], Mapping[str, Any] | None]


@dataclass
class InvoiceObject:
    namespace: str
    name: str
    uid: str
    generation: int
    body: Mapping[str, Any]
    # The newest version this reconcile has seen or written: the next write starts from it instead of a read
    # (a stale one only costs a 409 and a re-read inside update_status).
    latest: Mapping[str, Any] | None = None
    # ``latest`` came from the API server during this reconcile (a write's answer, or the read after a
    # conflict), not from kopf's body: nothing this reconcile did is missing from it, so it needs no re-read.
    fresh: bool = False

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> InvoiceObject:
        meta = body["metadata"]
        return cls(meta["namespace"], meta["name"], meta["uid"], int(meta.get("generation") or 1), body, body)

    @property
    def status(self) -> Mapping[str, Any]:
        return self.body.get("status") or {}


def with_conditions(
    obj: Mapping[str, Any], updates: list[cond.Condition], remove: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    status = obj.get("status") or {}
    return cond.merge(status.get("conditions"), updates, generation=obj["metadata"].get("generation"), remove=remove)


def changed_values(obj: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any] | None:
    """Only the fields that differ, so a no-op reconcile writes nothing."""
    status = obj.get("status") or {}
    diff = {key: value for key, value in values.items() if status.get(key) != value}
    return diff or None


def ready(status: cond.Status, reason: str, message: str) -> cond.Condition:
    return cond.Condition(cond.READY, status, reason, message)


class StatusWriter:
    """The invoice reconciler's dependencies and its two ways of writing the status."""

    def __init__(self, kube: Kube, clients: StripeClients, config: OperatorSettings) -> None:
        self.kube = kube
        self.clients = clients
        self.config = config

    async def write(self, obj: InvoiceObject, new_values: Values, conditions: list[cond.Condition],
                    remove: tuple[str, ...] = ()) -> dict[str, Any]:
        """``new_values``: the status fields to set, or a function computing them from the latest status (which
        may veto the write by returning None)."""
        def mutate(latest: dict[str, Any]) -> dict[str, Any] | None:
            values = new_values(latest.get("status") or {}) if callable(new_values) else new_values
            if values is None:
                return None
            phase = values.get("phase")
            if is_paid((latest.get("status") or {}).get("phase")) and phase is not None and not is_paid(phase):
                return None  # someone recorded the payment meanwhile: never go back
            merged = {**values, "observedGeneration": latest["metadata"].get("generation")}
            if conditions or remove:
                merged["conditions"] = with_conditions(latest, conditions, remove)
            return changed_values(latest, merged)

        return await self._update(obj, mutate)

    async def _update(self, obj: InvoiceObject, mutate: Callable[[dict[str, Any]], dict[str, Any] | None]
                      ) -> dict[str, Any]:
        initial = dict(obj.latest) if obj.latest is not None else None
        written, wrote = await update_status(self.kube, obj.namespace, obj.name, mutate, initial=initial)
        obj.latest, obj.fresh = written, obj.fresh or wrote or written is not initial
        return written

    async def write_if_current(self, obj: InvoiceObject, link_id: str, new_values: Values,
                               conditions: list[cond.Condition]) -> bool:
        """Write ``values`` only while the invoice is Open and ``link_id`` is its current link: False when it is
        not (paid, voided or renewed meanwhile), so a renewal never lands on an invoice that no longer wants it."""
        refused: list[bool] = []

        def mutate(latest: dict[str, Any]) -> dict[str, Any] | None:
            status = latest.get("status") or {}
            refused.clear()
            if status.get("phase") != "Open" or (status.get("paymentLink") or {}).get("id") != link_id:
                refused.append(True)
                return None
            values = new_values(status) if callable(new_values) else new_values
            merged: dict[str, Any] = dict(values or {})
            if conditions:
                merged["conditions"] = with_conditions(latest, conditions)
            return changed_values(latest, merged)

        await self._update(obj, mutate)
        return not refused
