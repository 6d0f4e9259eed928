"""On a kind cluster: build and load the image, helm install, apply examples/, pay through a signed webhook
sent over a port-forward, see the invoice Paid, delete the integration and see its finalizer run.

The Stripe API is the project's stand-in (fluxrate_sandbox.stripe_standin), served from this process on the
kind network's gateway so pods reach it; it knows the placeholder key of examples/01-secret.yaml.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from fluxrate_sandbox.processes import free_port
from fluxrate_sandbox.stack import EXAMPLE_SECRET_KEY
from fluxrate_sandbox.stripe_standin import StripeStandin
from fluxrate_sandbox.stripe_webhooks import sign_payload

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.prefix) / "bin"
IMAGE = os.environ.get("IMAGE", "fluxrate:e2e")
NAMESPACE = "fluxrate-system"
TENANT = "tenant-e2e"
RELEASE = "fr"

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]


def run(*args: str, check: bool = True, timeout: float = 600, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    print("+", " ".join(args), flush=True)
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done


def kubectl(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return run(str(BIN / "kubectl"), *args, **kwargs)


def kube_json(*args: str) -> dict[str, Any]:
    return json.loads(kubectl(*args, "-o", "json").stdout)


def wait_for(what: str, probe: Any, timeout: float = 180, interval: float = 2) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    name = f"fluxrate-e2e-{uuid.uuid4().hex[:6]}"
    kubeconfig = tmp_path_factory.mktemp("kind") / "kubeconfig"
    os.environ["KUBECONFIG"] = str(kubeconfig)
    run("kind", "create", "cluster", "--name", name, "--kubeconfig", str(kubeconfig), "--wait", "180s")
    try:
        if os.environ.get("FLUXRATE_E2E_SKIP_BUILD") != "1":
            run("docker", "build", "-t", IMAGE, str(ROOT), timeout=1200)
        run("kind", "load", "docker-image", IMAGE, "--name", name)
        yield name
    finally:
        if os.environ.get("FLUXRATE_E2E_KEEP") != "1":
            run("kind", "delete", "cluster", "--name", name, check=False)


def kind_gateway() -> str:
    """The host's address on the `kind` Docker network: pods reach this process there."""
    done = run("docker", "network", "inspect", "kind", "-f", "{{range .IPAM.Config}}{{.Gateway}} {{end}}")
    return next(ip for ip in done.stdout.split() if ":" not in ip)


@contextlib.contextmanager
def port_forward(target: str, remote_port: int, local_port: int) -> Iterator[str]:
    process = subprocess.Popen(
        [str(BIN / "kubectl"), "-n", NAMESPACE, "port-forward", target, f"{local_port}:{remote_port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        def listening() -> bool:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", local_port), timeout=1):
                return True
            return False
        wait_for("kubectl port-forward", listening, timeout=30, interval=0.5)
        yield f"http://127.0.0.1:{local_port}"
    finally:
        process.terminate()
        process.wait(10)


@contextlib.asynccontextmanager
async def stripe_standin(host: str) -> AsyncIterator[StripeStandin]:
    standin = StripeStandin(host, 0)
    standin.add_account(EXAMPLE_SECRET_KEY)
    async with standin:
        yield standin


async def test_install_pay_and_disconnect(cluster: str) -> None:
    gateway = kind_gateway()
    local_port = free_port()
    # The webhook URLs the operator builds point at the port-forward below: the signed webhook this test
    # sends goes through it, to the receiver Service, as Stripe's would through the Ingress.
    public_base_url = f"http://127.0.0.1:{local_port}"
    async with stripe_standin("0.0.0.0") as standin:
        stripe_api = f"http://{gateway}:{standin.port}"
        await asyncio.to_thread(
            run, str(BIN / "helm"), "install", RELEASE, str(ROOT / "charts" / "fluxrate"), "--namespace", NAMESPACE,
            "--create-namespace", "--wait", "--timeout", "5m",
            "--set", f"image.repository={IMAGE.rsplit(':', 1)[0]}", "--set", f"image.tag={IMAGE.rsplit(':', 1)[1]}",
            "--set", "image.pullPolicy=Never", "--set", f"publicBaseUrl={public_base_url}",
            "--set", f"stripe.apiBase={stripe_api}", "--set", "logLevel=DEBUG",
        )
        await asyncio.to_thread(kubectl, "create", "namespace", TENANT)
        await asyncio.to_thread(kubectl, "-n", TENANT, "apply", "-f", str(ROOT / "examples"))

        integration = await asyncio.to_thread(wait_for, "the integration to be Ready", lambda: _ready_integration())
        assert integration["status"]["webhookURL"] == (
            f"{public_base_url}/api/v1/webhooks/stripe/{TENANT}/production-stripe")
        invoice = await asyncio.to_thread(
            wait_for, "a payment link on inv-2026-0001", lambda: _invoice_with_link("inv-2026-0001"))
        link_id = invoice["status"]["paymentLink"]["id"]

        signing = await asyncio.to_thread(
            kube_json, "-n", TENANT, "get", "secret", "production-stripe-webhook-signing")
        secrets = [s for s in _decoded(signing).values() if s.startswith("whsec_")]
        assert secrets, "the managed signing secret Secret holds no whsec_ value"

        with port_forward(f"service/{RELEASE}-fluxrate-receiver", 80, local_port) as url:
            async with aiohttp.ClientSession() as http:
                webhook = f"{url}/api/v1/webhooks/stripe/{TENANT}/production-stripe"
                # a forged signature is refused and changes nothing
                forged = json.dumps({"id": "evt_forged", "type": "checkout.session.completed"})
                async with http.post(webhook, data=forged, headers={
                        "Stripe-Signature": sign_payload(forged, ["whsec_not_the_secret"]),
                        "Content-Type": "application/json"}) as answer:
                    assert answer.status == 400
                # the customer pays; the stand-in builds the real event, we deliver it signed
                result = await standin.pay(link_id)
                for event in _events_of(standin, result):
                    payload = json.dumps(event)
                    async with http.post(webhook, data=payload, headers={
                            "Stripe-Signature": sign_payload(payload, secrets),
                            "Content-Type": "application/json"}) as answer:
                        assert answer.status == 200, await answer.text()

        paid = await asyncio.to_thread(
            wait_for, "inv-2026-0001 to be Paid",
            lambda: (lambda inv: inv if inv.get("status", {}).get("phase") == "Paid" else None)(
                kube_json("-n", TENANT, "get", "invoice", "inv-2026-0001")))
        assert paid["status"]["phase"] == "Paid"

        # disconnect: the finalizer deletes the managed webhook endpoint in Stripe, then lets go
        endpoints_before = set(standin.webhook_endpoints)
        assert endpoints_before
        await asyncio.to_thread(kubectl, "-n", TENANT, "delete", "stripeintegration", "production-stripe",
                                "--wait=true", "--timeout=180s")
        gone = kubectl("-n", TENANT, "get", "stripeintegration", "production-stripe", check=False)
        assert gone.returncode != 0 and "NotFound" in gone.stderr
        assert not set(standin.webhook_endpoints) & endpoints_before, "the managed endpoint was not deleted"


def _ready_integration() -> dict[str, Any] | None:
    obj = kube_json("-n", TENANT, "get", "stripeintegration", "production-stripe")
    ready = [c for c in obj.get("status", {}).get("conditions", []) if c["type"] == "Ready"]
    return obj if ready and ready[0]["status"] == "True" else None


def _invoice_with_link(name: str) -> dict[str, Any] | None:
    obj = kube_json("-n", TENANT, "get", "invoice", name)
    return obj if (obj.get("status", {}).get("paymentLink") or {}).get("id") else None


def _decoded(secret: dict[str, Any]) -> dict[str, str]:
    import base64

    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


def _events_of(standin: StripeStandin, result: Any) -> list[dict[str, Any]]:
    assert result.events, "the stand-in produced no events for the payment"
    return list(result.events)
