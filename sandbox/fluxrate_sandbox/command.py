from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback by default)")
    parser.add_argument("--kube", choices=["emulator", "real"], default="emulator",
                        help="the Kubernetes API: the embedded emulator, or the real kube-apiserver, etcd and "
                             "controller-manager built from Go modules by `make realkube`")
    parser.add_argument("--kube-port", type=int, default=6443, help="Kubernetes API port (0: any free port)")
    parser.add_argument("--stripe-port", type=int, default=12111, help="Stripe API stand-in port")
    parser.add_argument("--smtp-port", type=int, default=2525, help="SMTP sink port")
    state_dir = Path(os.environ.get("FLUXRATE_SANDBOX_DIR", ".fluxrate-sandbox"))
    parser.add_argument("--state-dir", type=Path, default=state_dir, help="where kubeconfig, CA and env file go")
    parser.add_argument("--public-base-url", default="http://127.0.0.1:8080",
                        help="the receiver's URL the webhook URLs are built from (written to the env file)")


def instructions(sandbox: object) -> str:
    from fluxrate_sandbox.stack import EXAMPLE_SECRET_KEY, Sandbox

    assert isinstance(sandbox, Sandbox)
    return f"""fluxrate sandbox is running (Ctrl-C stops it):
  Kubernetes API   {sandbox.kube.url}
  Stripe API       {sandbox.stripe.url}   (accepts the example key {EXAMPLE_SECRET_KEY})
  SMTP sink        {sandbox.smtp.host}:{sandbox.smtp.port}
  kubeconfig       {sandbox.kube.kubeconfig}
  env file         {sandbox.env_file}

Point kubectl, the operator and the receiver at it:
  export KUBECONFIG={sandbox.kube.kubeconfig}
  kubectl apply -f examples/ && kubectl get stripeintegrations,invoices
  set -a; . {sandbox.env_file}; set +a
  fluxrate operator   # in one shell
  fluxrate receiver   # in another
"""


async def _serve(args: argparse.Namespace) -> None:
    from fluxrate_sandbox.stack import running_sandbox

    async with running_sandbox(
        args.state_dir.resolve(), host=args.host, kube_port=args.kube_port, stripe_port=args.stripe_port,
        smtp_port=args.smtp_port, public_base_url=args.public_base_url, kube_backend=args.kube,
    ) as sandbox:
        print(instructions(sandbox), flush=True)
        await asyncio.Event().wait()


def run(args: argparse.Namespace) -> int:
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))
    return 0
