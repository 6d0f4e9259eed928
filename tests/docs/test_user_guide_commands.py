"""The user guide's kubectl commands, run as written against the sandbox with the operator running.

Each command is first found verbatim in docs/user-guide.md, so the guide and this test cannot drift apart;
only the placeholders (sk_live_..., whsec_...) are replaced with sandbox values.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fluxrate_sandbox.stripe_standin import StripeStandin

from ..conftest import eventually
from ..operator.conftest import Cluster

ROOT = Path(__file__).resolve().parents[2]
GUIDE = (ROOT / "docs" / "user-guide.md").read_text()
KUBECTL = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")


def yaml_block(kind: str) -> str:
    for block in re.findall(r"```yaml\n(.*?)```", GUIDE, re.S):
        if f"kind: {kind}" in block and "metadata:" in block:
            return block
    raise LookupError(kind)


async def sh(command: str, placeholders: dict[str, str], stdin: str | None = None) -> str:
    """Run a command from the guide (it must appear there verbatim) with placeholders filled in."""
    flat = GUIDE.replace("\\\n  ", "").replace("\\|", "|")  # line continuations, table-escaped pipes
    assert command in flat, f"not in docs/user-guide.md: {command}"
    for placeholder, value in placeholders.items():
        command = command.replace(placeholder, value)
    command = command.replace("kubectl ", f"{KUBECTL} ")
    result = await asyncio.to_thread(
        subprocess.run, command, shell=True, capture_output=True, text=True, timeout=60, input=stdin,
        env={**os.environ},
    )
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is installed into the venv by the Makefile")
async def test_setup_steps_and_managing_the_integration(
    operator, cluster: Cluster, stripe_standin: StripeStandin
) -> None:
    account_id, key = stripe_standin.add_account()
    new_key = stripe_standin.add_key(account_id)
    values = {"sk_live_NEW": new_key, "sk_live_...": key, "whsec_...": "whsec_" + "a1b2c3d4" * 4}
    await cluster.kube.core.create_namespace({"metadata": {"name": "team-a"}})

    # Step 1 and step 2.
    await sh("kubectl -n team-a create secret generic stripe-credentials --from-literal=secret-key=sk_live_...", values)
    await sh("kubectl label secret stripe-credentials billing.fluxrate.co/watch=true -n team-a", values)
    integration = yaml.safe_dump(yaml.safe_load(yaml_block("StripeIntegration")))
    await sh("kubectl apply -f stripeintegration.yaml", {"stripeintegration.yaml": "-"}, stdin=integration)
    await cluster.wait_condition("stripeintegrations", "team-a", "production-stripe", "Ready", status="True")
    wide = await sh("kubectl -n team-a get si production-stripe -o wide", values)
    assert "WEBHOOK URL" in wide and "True" in wide and "/api/v1/webhooks/stripe/team-a/production-stripe" in wide

    # Step 3: the URL to paste; step 4: the signing secret.
    url = await sh("kubectl -n team-a get si production-stripe -o jsonpath='{.status.webhookURL}'", values)
    assert url.endswith("/api/v1/webhooks/stripe/team-a/production-stripe")
    waiting = await cluster.condition("stripeintegrations", "team-a", "production-stripe", "WebhookSecretConfigured")
    assert waiting["reason"] == "WaitingForWebhookSecret" and url in waiting["message"]
    await sh("kubectl -n team-a create secret generic production-stripe-webhook "
             "--from-literal=signing-secret=whsec_...", values)
    await sh("kubectl label secret production-stripe-webhook billing.fluxrate.co/watch=true -n team-a", values)
    ref = '{"spec":{"webhookSecretRef":{"name":"production-stripe-webhook","key":"signing-secret"}}}'
    await sh(f"kubectl -n team-a patch si production-stripe --type merge -p '{ref}'", values)
    await cluster.wait_condition("stripeintegrations", "team-a", "production-stripe", "WebhookSecretConfigured",
                                 status="True")
    await cluster.wait_condition("stripeintegrations", "team-a", "production-stripe", "SecretsWatched",
                                 status="True")

    # How payments work: the invoice from the guide.
    invoice = yaml.safe_load(yaml_block("Invoice"))
    await cluster.create("invoices", "team-a", invoice)
    await eventually(lambda: cluster.get("invoices", "team-a", "inv-2026-0001"),
                     lambda o: (o.get("status") or {}).get("phase") == "Open")
    listing = await sh("kubectl -n team-a get inv -o wide", values)
    assert "Open" in listing and "236.50" in listing and "https://buy.stripe.com/" in listing

    # Managing: rotate the API key, disable, disconnect.
    await sh("kubectl -n team-a create secret generic stripe-credentials --from-literal=secret-key=sk_live_NEW "
             "--dry-run=client -o yaml | kubectl apply -f -", values)
    await eventually(lambda: cluster.events("team-a", "production-stripe"),
                     lambda events: any(e["reason"] == "KeyRotated" for e in events))
    await sh("kubectl -n team-a patch si production-stripe --type merge -p '{\"spec\":{\"active\":false}}'", values)
    await cluster.wait_condition("stripeintegrations", "team-a", "production-stripe", "Ready", reason="Disabled")
    await sh("kubectl -n team-a delete si production-stripe", values)
    assert await cluster.get("stripeintegrations", "team-a", "production-stripe") is None


README = (ROOT / "README.md").read_text()


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is installed into the venv by the Makefile")
async def test_readme_quickstart_kubectl_commands(operator, cluster: Cluster, stripe_standin: StripeStandin) -> None:
    _, key = stripe_standin.add_account()
    await cluster.kube.core.create_namespace({"metadata": {"name": "team-a"}})
    commands = [line.split("#")[0].strip() for line in README.splitlines() if line.startswith("kubectl -n team-a")]
    assert len(commands) == 5, commands
    outputs = []
    for command in commands:
        command = command.replace("sk_test_...", key).replace("kubectl ", f"{KUBECTL} ")
        result = await asyncio.to_thread(subprocess.run, command, shell=True, capture_output=True, text=True,
                                         timeout=60, cwd=ROOT)
        assert result.returncode == 0, f"{command}\n{result.stderr}"
        outputs.append(result.stdout)
        if "stripeintegration.yaml" in command:
            await cluster.wait_condition("stripeintegrations", "team-a", "production-stripe", "Ready", status="True")
        if "invoice-usd.yaml" in command:
            await eventually(lambda: cluster.get("invoices", "team-a", "inv-2026-0001"),
                             lambda o: (o.get("status") or {}).get("phase") == "Open")
    assert "True" in outputs[2] and "WEBHOOK URL" in outputs[2]
    assert "Open" in outputs[4] and "https://buy.stripe.com/" in outputs[4]
