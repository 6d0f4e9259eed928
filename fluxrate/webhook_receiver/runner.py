"""Running the receiver: ``fluxrate receiver`` in production, ``running_receiver`` in tests, demo and chaos suite."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from fluxrate import webhook_url
from fluxrate.kube import Kube
from fluxrate.webhook_receiver.app import build_app
from fluxrate.webhook_receiver.logs import configure_logging
from fluxrate.webhook_receiver.receiver import Receiver
from fluxrate.webhook_receiver.settings import ReceiverSettings

log = logging.getLogger(__name__)


@dataclass
class RunningReceiver:
    receiver: Receiver
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def webhook_url(self, namespace: str, integration: str) -> str:
        return webhook_url(self.url, namespace, integration)


@contextlib.asynccontextmanager
async def running_receiver(settings: ReceiverSettings, kube: Kube | None = None) -> AsyncIterator[RunningReceiver]:
    """Serve on ``settings.host:settings.port`` (port 0: any free port) in the current event loop.

    On exit the server stops accepting, lets in-flight deliveries finish (``settings.shutdown_timeout``),
    then flushes pending delivery status and Events. ``kube`` defaults to one connected via ``$KUBECONFIG``.
    """
    own_kube = kube is None
    kube = kube or await Kube.connect()
    receiver = Receiver(settings, kube)
    runner = web.AppRunner(build_app(receiver), access_log=None, shutdown_timeout=settings.shutdown_timeout)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        port = runner.addresses[0][1] if settings.port == 0 else settings.port
        receiver.start()
        log.info("webhook receiver listening on %s:%s", settings.host, port)
        yield RunningReceiver(receiver, settings.host if settings.host != "0.0.0.0" else "127.0.0.1", port)
    finally:
        receiver.draining = True
        await runner.cleanup()  # stops listening, lets in-flight handlers finish (shutdown_timeout)
        await receiver.stop()  # then the pending status and Events
        if own_kube:
            await kube.close()


async def serve(settings: ReceiverSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with running_receiver(settings):
        await stop.wait()
        log.info("shutting down: finishing in-flight deliveries")


def run_receiver(settings: ReceiverSettings) -> int:
    configure_logging(settings.log_level)
    asyncio.run(serve(settings))
    return 0
