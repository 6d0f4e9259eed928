"""``fluxrate demo``: the whole flow on the embedded sandbox, narrated."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--keep", action="store_true",
                        help="leave the sandbox, operator and receiver running and print the kubeconfig path")
    parser.add_argument("--state-dir", type=Path, default=Path(os.environ.get("FLUXRATE_DEMO_DIR", ".fluxrate-demo")),
                        help="where the kubeconfig, logs and env file go")
    parser.add_argument("--namespace", default="demo", help="namespace the examples are applied to")
    parser.add_argument("--examples", type=Path, default=None, help="folder of manifests (default: examples/)")
    parser.add_argument("--kube", choices=["emulator", "real"], default="emulator",
                        help="the embedded Kubernetes API emulator, or the real kube-apiserver (`make realkube`)")


def run(args: argparse.Namespace) -> int:
    import asyncio
    import contextlib

    from fluxrate_sandbox.demo.flow import run_demo

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends `--keep`
        return asyncio.run(run_demo(args.state_dir.resolve(), namespace=args.namespace, keep=args.keep,
                                    examples=args.examples, stripe_api_key=os.environ.get("STRIPE_API_KEY"),
                                    kube_backend=args.kube))
    return 0
