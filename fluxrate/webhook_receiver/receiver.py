"""The receiver's parts wired together, with their lifecycle (start, readiness, graceful stop)."""

from __future__ import annotations

import asyncio
import logging

from kubernetes_asyncio import client

from fluxrate.kube import Kube
from fluxrate.webhook_receiver.dedupe import RecentEvents
from fluxrate.webhook_receiver.deliveries import DeliveryRecorder
from fluxrate.webhook_receiver.events import EventPoster
from fluxrate.webhook_receiver.metrics import ReceiverMetrics
from fluxrate.webhook_receiver.processing import DeliveryProcessor
from fluxrate.webhook_receiver.secrets_cache import TRANSIENT_ERRORS, IntegrationCache
from fluxrate.webhook_receiver.settings import ReceiverSettings

log = logging.getLogger(__name__)


class Receiver:
    def __init__(self, settings: ReceiverSettings, kube: Kube) -> None:
        self.settings = settings
        self.kube = kube
        self.metrics = ReceiverMetrics()
        self.cache = IntegrationCache(kube, ttl=settings.secret_cache_ttl)
        self.recorder = DeliveryRecorder(kube, interval=settings.status_flush_interval)
        self.events = EventPoster(kube)
        self.recent = RecentEvents(settings.dedupe_size)
        self.processor = DeliveryProcessor(settings, kube, self.cache, self.recorder, self.events, self.metrics,
                                           self.recent)
        self.draining = False

    def start(self) -> None:
        self.recorder.start()

    async def stop(self) -> None:
        """After the HTTP server finished its in-flight requests: write what is pending."""
        self.draining = True
        await self.recorder.stop()
        await self.events.drain()

    async def reaches_kubernetes(self, timeout: float = 3.0) -> bool:
        try:
            async with asyncio.timeout(timeout):
                await client.VersionApi(self.kube.api).get_code()
        except TRANSIENT_ERRORS as exc:
            log.info("readiness: Kubernetes API not reachable (%s)", type(exc).__name__)
            return False
        return True
