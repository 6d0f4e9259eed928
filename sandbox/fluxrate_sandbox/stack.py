"""The whole sandbox: Kubernetes API emulator, Stripe stand-in and SMTP sink, started together on loopback."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from fluxrate import crds
from fluxrate_sandbox.kube_server import KubeSandbox
from fluxrate_sandbox.processes import free_port
from fluxrate_sandbox.real_kube import RealKube, running_real_kube
from fluxrate_sandbox.smtp_sink import SmtpSink
from fluxrate_sandbox.stripe_standin import DEMO_TEST_KEY, StripeStandin

# The placeholder key in examples/01-secret.yaml: the stand-in knows it, so the examples work as they are.
EXAMPLE_SECRET_KEY = "sk_test_fluxrateexample000000000000"


KUBE_BACKENDS = ("emulator", "real")


@dataclass
class Sandbox:
    kube: KubeSandbox | RealKube
    stripe: StripeStandin
    smtp: SmtpSink
    state_dir: Path
    public_base_url: str
    # the operator's /metrics port: several sandboxes (and their operators) may run on one machine at once
    metrics_port: int = field(default_factory=free_port)

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
            "FLUXRATE_METRICS_PORT": str(self.metrics_port),
        }

    def write_env_file(self) -> Path:
        lines = [f"{key}={value}" for key, value in self.env().items()]
        self.env_file.write_text("\n".join(lines) + "\n")
        return self.env_file


@contextlib.asynccontextmanager
async def running_sandbox(
    state_dir: Path, *, host: str = "127.0.0.1", kube_port: int = 0, stripe_port: int = 0, smtp_port: int = 0,
    public_base_url: str = "http://127.0.0.1:8080", stripe_keys: tuple[str, ...] = (DEMO_TEST_KEY, EXAMPLE_SECRET_KEY),
    kube_backend: str = "emulator", **stripe_options: object,
) -> AsyncIterator[Sandbox]:
    """The sandbox; ``kube_backend="real"`` runs the real kube-apiserver (``make realkube``) instead of the emulator."""
    await asyncio.to_thread(state_dir.mkdir, mode=0o700, parents=True, exist_ok=True)
    stripe = StripeStandin(host, stripe_port, **stripe_options)  # type: ignore[arg-type]
    for key in stripe_keys:
        stripe.add_account(key)
    async with _kube(kube_backend, host, kube_port, state_dir / "kube") as kube, stripe, \
            SmtpSink(host, smtp_port) as smtp:
        sandbox = Sandbox(kube, stripe, smtp, state_dir, public_base_url)
        sandbox.write_env_file()
        yield sandbox


@contextlib.asynccontextmanager
async def _kube(backend: str, host: str, port: int, state_dir: Path) -> AsyncIterator[KubeSandbox | RealKube]:
    if backend == "emulator":
        async with KubeSandbox(host, port, state_dir, auto_namespaces=True) as emulator:
            await emulator.apply_crds(crds.crds_dir())
            yield emulator
        return
    if backend != "real":
        raise ValueError(f"unknown Kubernetes backend {backend!r}: use one of {', '.join(KUBE_BACKENDS)}")
    async with running_real_kube(state_dir, host=host, port=port) as real:
        yield real
