"""Where a duplicate delivery's CPU goes inside the receiver: ``python -m bench.receiver_cost``.

Calls ``DeliveryProcessor.handle`` in-process (no HTTP) on redeliveries of applied events, then again with parts
switched off: the log line (logger level raised) and the signature check (stubbed). Differences between the rows
are what those parts cost. Complements the ceiling's (b)/(a) ratio: what the receiver adds to a bare aiohttp app.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fluxrate.webhook_receiver.processing as processing
from bench.tenant import create_tenant, seed_open_invoices
from bench.webhook_load import deliveries, paid_session_event, sign
from fluxrate.kube import Kube
from fluxrate.webhook_receiver.logs import DELIVERY_LOGGER, configure_logging
from fluxrate.webhook_receiver.processing import Delivery, DeliveryProcessor
from fluxrate.webhook_receiver.runner import running_receiver
from fluxrate.webhook_receiver.settings import ReceiverSettings
from fluxrate_sandbox.stack import running_sandbox


@contextlib.contextmanager
def _without_log_line() -> Iterator[None]:
    logger = logging.getLogger(DELIVERY_LOGGER)
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _without_verification() -> Iterator[None]:
    verify = processing.verify
    processing.verify = lambda *args, **kwargs: None  # type: ignore[assignment]
    try:
        yield
    finally:
        processing.verify = verify


def _production_logging_to_nowhere() -> None:
    configure_logging("INFO")
    for handler in logging.getLogger().handlers:  # the production format and filters, written to /dev/null
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(open(os.devnull, "w"))


async def _per_delivery_us(processor: DeliveryProcessor, items: list[tuple[bytes, str]], namespace: str,
                           integration: str, count: int) -> float:
    started = time.perf_counter()
    for i in range(count):
        body, signature = items[i % len(items)]
        answer = await processor.handle(Delivery(namespace, integration, body, signature, time.monotonic()))
        assert answer.outcome == "duplicate", answer
    return round((time.perf_counter() - started) / count * 1e6, 1)


async def measure(count: int = 20_000) -> dict[str, Any]:
    state = Path(tempfile.mkdtemp(prefix="fluxrate-cost-"))
    async with running_sandbox(state, public_base_url="http://127.0.0.1:9") as sandbox:
        os.environ["KUBECONFIG"] = str(sandbox.kube.kubeconfig)
        kube = await Kube.connect()
        try:
            _, key = sandbox.stripe.add_account()
            tenant = await create_tenant(kube, "cost", key)
            invoices = seed_open_invoices(sandbox, tenant, "inv", 50)
            _production_logging_to_nowhere()
            async with running_receiver(ReceiverSettings(host="127.0.0.1", port=0), kube) as running:
                processor = running.receiver.processor
                applied = deliveries([paid_session_event(i) for i in invoices], tenant.signing_secret, "applied")
                for item in applied:
                    await processor.handle(Delivery("cost", tenant.integration, item.body.encode(), item.signature,
                                                    time.monotonic()))
                items = [(item.body.encode(), sign(item.body, tenant.signing_secret)) for item in applied]
                args = (processor, items, "cost", tenant.integration, count)
                await _per_delivery_us(*args)  # warm-up
                full = await _per_delivery_us(*args)
                with _without_log_line():
                    no_log = await _per_delivery_us(*args)
                    with _without_verification():
                        neither = await _per_delivery_us(*args)
        finally:
            await kube.close()
    return {"deliveries": count, "handle_us": full, "log_line_us": round(full - no_log, 1),
            "verification_us": round(no_log - neither, 1), "rest_us": neither}


def main() -> int:
    as_json = sys.argv[1:2] == ["--json"]
    result = asyncio.run(measure(int(sys.argv[2]) if as_json and len(sys.argv) > 2 else 20_000))
    if as_json:
        print(json.dumps(result))
        return 0
    print(f"DeliveryProcessor.handle per duplicate delivery ({result['deliveries']} in-process): "
          f"{result['handle_us']} us = log line {result['log_line_us']} us + signature check "
          f"{result['verification_us']} us + the rest {result['rest_us']} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
