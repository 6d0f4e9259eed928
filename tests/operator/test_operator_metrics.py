"""The operator serves its billing metrics at /metrics, kept from the watch events of the sandbox's API server."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fluxrate.operator.main import running_operator
from fluxrate.operator.settings import OperatorSettings, add_operator_arguments, settings_from_args
from fluxrate_sandbox.processes import free_port
from fluxrate_sandbox.stripe_standin import StripeStandin

from ..conftest import eventually
from .conftest import Cluster
from .test_invoices import INV, SI, connect, invoice_body, wait_phase


async def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def sample(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted(labels.items()))


async def scraped_until(port: int, check: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return await eventually(lambda: scrape(port), check, timeout=20)


async def test_the_operator_serves_billing_metrics_kept_from_watch_events(
    kube: Any, operator_settings: OperatorSettings, cluster: Cluster, stripe_standin: StripeStandin, namespace: str,
) -> None:
    port = free_port()
    async with running_operator(dataclasses.replace(operator_settings, metrics_port=port)):
        await connect(cluster, stripe_standin, namespace)
        await cluster.apply_secret(namespace, "revoked", {"secret-key": "sk_test_unknownunknown12345"})
        await cluster.create(SI, namespace, {"kind": "StripeIntegration", "metadata": {"name": "revoked"},
                                             "spec": {"secretKeyRef": {"name": "revoked", "key": "secret-key"}}})
        await cluster.create(INV, namespace, invoice_body("usd-1", "USD"))
        await wait_phase(cluster, namespace, "usd-1", "Open")

        found = await scraped_until(port, lambda s: s.get(sample("fluxrate_invoices", phase="Open")) == 1 and s.get(
            sample("fluxrate_integration_ready", namespace=namespace, integration="revoked")) == 0 and s.get(
            sample("fluxrate_stripe_requests_total", outcome="authentication_error"), 0) >= 1)
        assert found[sample("fluxrate_invoices_outstanding_minor", currency="USD")] == 23650
        assert found[sample("fluxrate_integration_ready", namespace=namespace, integration="production-stripe")] == 1
        assert found[sample("fluxrate_stripe_requests_total", outcome="ok")] >= 2  # the key check, the link
        assert found[sample("fluxrate_invoices_overdue")] == 0

        await cluster.delete(INV, namespace, "usd-1")
        await cluster.delete(SI, namespace, "revoked")
        found = await scraped_until(port, lambda s: s.get(sample("fluxrate_invoices", phase="Open")) == 0 and sample(
            "fluxrate_integration_ready", namespace=namespace, integration="revoked") not in s)
        assert found[sample("fluxrate_invoices_outstanding_minor", currency="USD")] == 0
    # the endpoint stops with the operator
    try:
        await scrape(port)
    except aiohttp.ClientConnectionError:
        pass
    else:
        raise AssertionError("/metrics still answers after the operator stopped")


def test_the_cli_serves_metrics_on_9090_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    def parsed(*argv: str) -> int:
        parser = argparse.ArgumentParser()
        add_operator_arguments(parser)
        return settings_from_args(parser.parse_args(["--public-base-url", "https://b.example.com", *argv])).metrics_port

    monkeypatch.delenv("FLUXRATE_METRICS_PORT", raising=False)
    assert parsed() == 9090
    assert parsed("--metrics-port", "0") == 0
    monkeypatch.setenv("FLUXRATE_METRICS_PORT", "9191")
    assert parsed() == 9191
    # in-process operators (tests, the demo) serve none unless asked: several share one process
    assert OperatorSettings(public_base_url="https://b.example.com").metrics_port == 0
