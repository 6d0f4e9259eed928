"""The secret-leak search every operator test ends with (``conftest.no_secret_leaks``) finds secrets that are gone."""

from __future__ import annotations

import base64
import logging

import pytest

from fluxrate.kube import decode_secret_data
from fluxrate_sandbox.kube_server import KubeSandbox
from fluxrate_sandbox.stripe_standin import StripeStandin

from ..conftest import eventually
from .conftest import Cluster, haystacks_of, leaks, secrets_to_search
from .test_integrations import SI, connected


def _info_record(message: str) -> logging.LogRecord:
    """A log line as the operator would write it, built here and never emitted (no secret reaches any log)."""
    return logging.LogRecord("fluxrate.operator.integrations", logging.INFO, __file__, 0, message, None, None)


async def test_a_managed_signing_secret_logged_after_its_endpoint_was_deleted_is_found(
    operator, kube: KubeSandbox, cluster: Cluster, stripe_standin: StripeStandin, namespace: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    account_id, _ = await connected(cluster, stripe_standin, namespace, managed=True)
    obj = await cluster.get(SI, namespace, "prod")
    stored = await cluster.kube.core.read_namespaced_secret(obj["status"]["webhookSecretName"], namespace)
    whsec = decode_secret_data(stored)["signing-secret"]
    assert whsec.startswith("whsec_")

    await cluster.delete(SI, namespace, "prod")
    await eventually(lambda: [e for e in stripe_standin.webhook_endpoints.values() if e.account_id == account_id],
                     lambda found: found == [])
    assert all(whsec not in e.secrets for e in stripe_standin.webhook_endpoints.values())  # gone from Stripe

    clean = haystacks_of(kube, caplog.records)
    assert leaks(secrets_to_search(stripe_standin), clean) == []
    logged = haystacks_of(kube, [*caplog.records, _info_record(f"registered endpoint, signing secret {whsec}")])
    assert leaks(secrets_to_search(stripe_standin), logged) == ["a secret in logs"]
    encoded = base64.b64encode(whsec.encode()).decode()
    logged_b64 = haystacks_of(kube, [*caplog.records, _info_record(f"secret data {encoded}")])
    assert leaks(secrets_to_search(stripe_standin), logged_b64) == ["a base64-encoded secret in logs"]
