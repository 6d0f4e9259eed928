"""Prometheus metrics of the receiver, on a registry of its own (several receivers may share a process in tests)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from fluxrate.payments import HANDLED_TYPES

OUTCOMES = ("applied", "duplicate", "ignored", "unmatched", "signature_failed", "error")
# Buckets for a request that verifies an HMAC and does at most a few Kubernetes round trips.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def type_label(event_type: str | None) -> str:
    """Bounded label values: the handled types by name, anything else as ``other`` (or ``unknown`` unverified)."""
    if event_type is None:
        return "unknown"
    return event_type if event_type in HANDLED_TYPES else "other"


class ReceiverMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.deliveries = Counter(
            "fluxrate_receiver_deliveries", "Webhook deliveries by outcome and event type.",
            ["outcome", "type"], registry=self.registry,
        )
        self.latency = Histogram(
            "fluxrate_receiver_delivery_duration_seconds", "Time from receiving a delivery to answering it.",
            ["outcome"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.in_flight = Gauge("fluxrate_receiver_deliveries_in_flight", "Deliveries being processed.",
                               registry=self.registry)
        self.status_flush_failures = Counter(
            "fluxrate_receiver_status_flush_failures", "Failed writes of delivery counts to StripeIntegration status.",
            registry=self.registry,
        )
        for outcome in OUTCOMES:  # every outcome is present from the start, at 0
            self.latency.labels(outcome)
        self._children: dict[tuple[str, str], tuple[Any, Any]] = {}

    def observe(self, outcome: str, event_type: str | None, seconds: float) -> None:
        key = (outcome, type_label(event_type))
        children = self._children.get(key)
        if children is None:  # labels() takes a lock and builds a tuple: once per label set, not per delivery
            children = self._children[key] = (self.deliveries.labels(*key), self.latency.labels(outcome))
        children[0].inc()
        children[1].observe(seconds)

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
