"""Reconciling an Invoice, in parts:

- ``reconciler``: ``Reconciler.reconcile`` (and the poll for missed payments, and voiding), which puts together
- ``link_creation``: the invoice's payment link, created when it is finalized;
- ``renewal``: a replacement for a link that can no longer take a payment;
- ``notification``: the email of each link to the customer;
- ``deactivation``: stopping links from being paid again;
- ``receipts``: the receipt emailed to the customer for a payment;
- ``status``: the invoice object and its status writes; ``links``: the links as the status records them (pure).
"""

from fluxrate.operator.invoices.links import (
    FAILED_INTENT_STATUSES,
    active_links,
    jitter_delay,
    link_history,
    wants_link_work,
    with_link,
    with_links_inactive,
)
from fluxrate.operator.invoices.receipts import RECEIPT_TRIES_IN_EVENT, deliver_receipt, receipt_state
from fluxrate.operator.invoices.reconciler import Reconciler
from fluxrate.operator.invoices.status import InvoiceObject, Values

__all__ = [
    "FAILED_INTENT_STATUSES",
    "RECEIPT_TRIES_IN_EVENT",
    "InvoiceObject",
    "Reconciler",
    "Values",
    "active_links",
    "deliver_receipt",
    "jitter_delay",
    "link_history",
    "receipt_state",
    "wants_link_work",
    "with_link",
    "with_links_inactive",
]
