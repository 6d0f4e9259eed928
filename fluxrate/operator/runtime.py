"""What the operator's handlers share, kept in kopf's memo."""

from __future__ import annotations

from fluxrate.kube import Kube
from fluxrate.operator import clock, invoices
from fluxrate.operator.metrics import BillingMetrics
from fluxrate.operator.schedule import KeyedLocks, ReconcileSchedule
from fluxrate.operator.settings import OperatorSettings
from fluxrate.operator.stripe_clients import StripeClients
from fluxrate.operator.waiting import WaitingInvoices


class Runtime:
    """What the handlers share, kept in kopf's memo."""

    def __init__(self, config: OperatorSettings, kube: Kube) -> None:
        self.config = config
        self.kube = kube
        self.metrics = BillingMetrics()  # kept from watch events; served at /metrics (config.metrics_port)
        self.clients = StripeClients(
            api_base=config.stripe_api_base,
            max_network_retries=config.stripe_max_network_retries,
            rate_limit_test=config.rate_limit_test,
            rate_limit_live=config.rate_limit_live,
            observe=self.metrics.observe_stripe_request,
        )
        self.lock = KeyedLocks()  # runtime.lock(kind, namespace, name): one holder at a time per object
        self.invoices = invoices.Reconciler(kube, self.clients, config)
        self.waiting = WaitingInvoices()
        self.schedule = ReconcileSchedule()
        # the wall clock of due dates and reminders; a test installs one it moves (clock.install)
        self.clock = clock.installed()
        subscribe = getattr(self.clock, "on_change", None)
        if callable(subscribe):
            subscribe(self.schedule.wake_all)
