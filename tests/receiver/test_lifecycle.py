"""Point 8 of the issue: graceful shutdown finishes in-flight deliveries and writes what is pending;
and the ``fluxrate receiver`` command's flags and environment variables."""

from __future__ import annotations

import asyncio
import json

import pytest

from fluxrate.cli import build_parser
from fluxrate.webhook_receiver.runner import running_receiver
from fluxrate.webhook_receiver.settings import MIB, ReceiverSettings, settings_from_args

from ..conftest import eventually
from .conftest import Bench, receiver_settings


async def test_shutdown_finishes_in_flight_deliveries_and_flushes_the_status(bench: Bench) -> None:
    await bench.integration()
    _, link = await bench.invoice("inv-1")
    event = bench.event("payment_intent.succeeded", {
        "id": "pi_1", "object": "payment_intent", "amount": 23650, "amount_received": 23650, "currency": "usd",
        "livemode": False, "metadata": link["metadata"]})
    body = json.dumps(event)
    headers = {"Stripe-Signature": bench.sign(body, bench.secrets[f"{bench.namespace}/stripe"])}
    settings = receiver_settings(status_flush_interval=3600.0)
    async with running_receiver(settings) as second:
        bench.sandbox.faults.latency = 0.2  # every Kubernetes request now takes a while

        async def deliver() -> int:
            async with bench.http.post(second.webhook_url(bench.namespace, "stripe"), data=body,
                                       headers=headers) as resp:
                return resp.status

        in_flight = asyncio.create_task(deliver())
        await eventually(lambda: second.receiver.metrics.registry.get_sample_value(
            "fluxrate_receiver_deliveries_in_flight"), lambda n: n == 1, timeout=5)
    # the block has ended: the server stopped, but only after answering
    assert await in_flight == 200
    bench.sandbox.faults.latency = 0.0
    assert (await bench.invoice_status("inv-1"))["phase"] == "Paid"
    counts = (await bench.get("stripeintegrations", "stripe"))["status"]["deliveries"]["counts"]
    assert counts["applied"] == 1  # flushed on shutdown, not after an hour


def test_flags_fall_back_to_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLUXRATE_RECEIVER_PORT", "9000")
    monkeypatch.setenv("FLUXRATE_RECEIVER_SIGNATURE_TOLERANCE", "120")
    monkeypatch.setenv("FLUXRATE_RECEIVER_NAMESPACES", "billing,shop")
    args = build_parser().parse_args(["receiver", "--max-body-bytes", "2048", "--status-flush-interval", "5"])
    settings = settings_from_args(args)
    assert settings == ReceiverSettings(port=9000, signature_tolerance=120.0, max_body_bytes=2048,
                                        status_flush_interval=5.0, namespaces=("billing", "shop"))
    defaults = settings_from_args(build_parser().parse_args(["receiver", "-n", "a", "-n", "b"]))
    assert defaults.namespaces == ("a", "b")  # flags replace the environment


def test_defaults() -> None:
    settings = settings_from_args(build_parser().parse_args(["receiver"]))
    assert (settings.port, settings.signature_tolerance, settings.max_body_bytes) == (8080, 300.0, MIB)
    assert settings.namespaces == ()
