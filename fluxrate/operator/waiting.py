"""Invoices that wait for their StripeIntegration (Finalized ones for their link, paid ones for their receipt),
kept in memory from the invoices' watch events.

A kopf index did this before, but kopf holds every handler until each indexed object has been indexed, through
a readiness flag per object: with 10,000 invoices an operator never got to resume them (quadratic waits).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from fluxrate.invoice_status import is_paid
from fluxrate.models import integration_ref_name
from fluxrate.operator.invoices.receipts import receipt_state

Key = tuple[str, str]  # (namespace, integration name)


def waits_for(spec: Mapping[str, Any], status: Mapping[str, Any]) -> str | None:
    """The integration a Finalized invoice without a payment link waits for, or a paid one whose receipt was not
    tried yet (it reads the payment method through the integration); None when it waits for nothing."""
    if receipt_state(status) == "send":
        return integration_ref_name(spec)
    if spec.get("state") != "Finalized" or status.get("paymentLink"):
        return None
    if is_paid(status.get("phase")) or status.get("phase") in ("Failed", "Void"):
        return None
    return integration_ref_name(spec)


class WaitingInvoices:
    def __init__(self) -> None:
        self._by_integration: defaultdict[Key, set[str]] = defaultdict(set)
        self._keys: dict[Key, Key] = {}  # (namespace, invoice) -> the key it is filed under

    def update(self, namespace: str, name: str, integration: str | None) -> None:
        """File the invoice under the integration it waits for, or nowhere (``None``, also for a deleted one)."""
        previous = self._keys.pop((namespace, name), None)
        if previous is not None:
            names = self._by_integration[previous]
            names.discard(name)
            if not names:
                del self._by_integration[previous]
        if integration is not None:
            self._by_integration[(namespace, integration)].add(name)
            self._keys[(namespace, name)] = (namespace, integration)

    def of(self, namespace: str, integration: str) -> frozenset[str]:
        return frozenset(self._by_integration.get((namespace, integration), ()))
