"""Running the operator: ``fluxrate operator`` in production, ``running_operator`` in tests and the demo."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator

import kopf

from fluxrate import redact
from fluxrate.operator import sharding
from fluxrate.operator.handlers import register
from fluxrate.operator.settings import OperatorSettings


def configure_logging(level: str) -> None:
    # kopf's formatter prefixes each object's messages with [namespace/name]: "Handler 'invoice' succeeded" alone
    # does not say which invoice.
    kopf.configure(debug=level == "DEBUG", log_format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                   log_prefix=True)
    logging.getLogger().setLevel(getattr(logging, level))
    redact.install()


def build_registry(config: OperatorSettings) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    register(registry, config)
    return registry


async def operate(
    config: OperatorSettings,
    *,
    stop_flag: asyncio.Event | None = None,
    ready_flag: asyncio.Event | None = None,
) -> None:
    if config.peering and config.standby_delay > 0:
        # Two replicas that start together would both act until each has seen the other's keep-alive; a standby
        # that joins later sees the active replica at once and pauses (and a primary that just died stays "alive"
        # in the peering for its whole lifetime, 60 s, so a takeover is not slowed down by this).
        logging.getLogger(__name__).info("Standby replica: joining the peering %s in %.0f s.", config.peering,
                                         config.standby_delay)
        await asyncio.sleep(config.standby_delay)
    # a shard sees only its namespaces' integrations, invoices and Secrets (set here: kopf's tasks inherit it)
    sharding.install(sharding.Shard(config.shard_index, config.shard_count))
    await kopf.operator(
        registry=build_registry(config),
        standalone=not config.peering,
        peering_name=config.peering,
        priority=config.priority,
        clusterwide=not config.namespaces,
        namespaces=config.namespaces,
        liveness_endpoint=config.liveness_endpoint,
        stop_flag=stop_flag,
        ready_flag=ready_flag,
        memo=kopf.Memo(),
    )


def run_operator(config: OperatorSettings) -> int:
    configure_logging(config.log_level)
    asyncio.run(operate(config))
    return 0


@contextlib.asynccontextmanager
async def running_operator(config: OperatorSettings, startup_timeout: float = 30.0) -> AsyncIterator[None]:
    """Run the operator in a thread with its own event loop until the block ends (``$KUBECONFIG`` says where).

    kopf cancels every task of its loop on exit, so it must not share the caller's loop.
    """
    stop, ready = threading.Event(), threading.Event()
    failure: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(operate(config, stop_flag=stop, ready_flag=ready))
        except BaseException as exc:  # reported to the caller below
            failure.append(exc)
            ready.set()

    thread = threading.Thread(target=target, name="fluxrate-operator", daemon=True)
    thread.start()
    await asyncio.to_thread(ready.wait, startup_timeout)
    if failure:
        raise RuntimeError("the operator failed to start") from failure[0]
    try:
        yield
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, 30)
