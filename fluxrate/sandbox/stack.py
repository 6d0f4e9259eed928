"""The whole sandbox: Kubernetes API emulator, Stripe stand-in and SMTP sink, started together on loopback."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from fluxrate import crds
from fluxrate.sandbox.kube_server import KubeSandbox
from fluxrate.sandbox.smtp_sink import SmtpSink
from fluxrate.sandbox.stripe_standin import DEMO_TEST_KEY, StripeStandin

# The placeholder key in examples/01-secret.yaml: the stand-in knows it, so the examples work as they are.
EXAMPLE_SECRET_KEY = "sk_test_fluxrateexample000000000000"


@dataclass
class Sandbox:
    kube: KubeSandbox
    stripe: StripeStandin
    smtp: SmtpSink
    state_dir: Path
    public_base_url: str

    @property
    def env_file(self) -> Path:
        return self.state_dir / "sandbox.env"

    def env(self) -> dict[str, str]:
        """What the operator and the receiver need to talk to the sandbox (no secrets: all are sandbox-only)."""
        return {
            "KUBECONFIG": str(self.kube.kubeconfig),
            "FLUXRATE_PUBLIC_BASE_URL": self.public_base_url,
            "FLUXRATE_STRIPE_API_BASE": self.stripe.url,
            "FLUXRATE_SMTP_HOST": self.smtp.host,
            "FLUXRATE_SMTP_PORT": str(self.smtp.port),
            "FLUXRATE_SMTP_SECURITY": "none",
        }

    def write_env_file(self) -> Path:
        lines = [f"{key}={value}" for key, value in self.env().items()]
        self.env_file.write_text("\n".join(lines) + "\n")
        return self.env_file


@contextlib.asynccontextmanager
async def running_sandbox(
    state_dir: Path, *, host: str = "127.0.0.1", kube_port: int = 0, stripe_port: int = 0, smtp_port: int = 0,
    public_base_url: str = "http://127.0.0.1:8080", stripe_keys: tuple[str, ...] = (DEMO_TEST_KEY, EXAMPLE_SECRET_KEY),
    **stripe_options: object,
) -> AsyncIterator[Sandbox]:
    await asyncio.to_thread(state_dir.mkdir, mode=0o700, parents=True, exist_ok=True)
    stripe = StripeStandin(host, stripe_port, **stripe_options)  # type: ignore[arg-type]
    for key in stripe_keys:
        stripe.add_account(key)
    async with (
        KubeSandbox(host, kube_port, state_dir / "kube", auto_namespaces=True) as kube,
        stripe,
        SmtpSink(host, smtp_port) as smtp,
    ):
        await kube.apply_crds(crds.crds_dir())
        sandbox = Sandbox(kube, stripe, smtp, state_dir, public_base_url)
        sandbox.write_env_file()
        yield sandbox
