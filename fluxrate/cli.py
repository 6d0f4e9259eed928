"""The one console script: ``fluxrate operator|receiver|sandbox|demo``.

Each subcommand lives in a small ``command`` module that declares its arguments
without importing heavy dependencies, so ``fluxrate --help`` is fast and works
without the optional extras installed.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from fluxrate import __version__

# name -> (module with add_arguments(parser) and run(args) -> int, one-line help). `sandbox` and `demo` live in the
# test stack, the fluxrate-sandbox package in this repository's sandbox/ folder, which the image does not carry.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "operator": ("fluxrate.operator.command", "run the kopf operator (reconciles StripeIntegrations and Invoices)"),
    "receiver": ("fluxrate.webhook_receiver.command", "run the Stripe webhook receiver (aiohttp)"),
    "sandbox": ("fluxrate_sandbox.command", "run the embedded Kubernetes API, Stripe stand-in and SMTP sink"),
    "demo": ("fluxrate_sandbox.demo.command", "show the whole flow on the embedded sandbox"),
}


TEST_STACK = ("It comes with the test stack, the fluxrate-sandbox package: from a checkout of fluxrate, run "
              "`make install` or `pip install -e ./sandbox`.")
MISSING = {"sandbox": TEST_STACK, "demo": TEST_STACK}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fluxrate",
        description="Stripe Payment Links for invoices declared as Kubernetes resources.",
    )
    parser.add_argument("--version", action="version", version=f"fluxrate {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # A subcommand whose module (or its extra) is not installed still shows in --help.
            sub.add_parser(name, help=f"{help_text} [unavailable: {exc.name} is not installed]",
                           description=MISSING.get(name, ""))
            continue
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(sub_parser)
        sub_parser.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    run = getattr(args, "_run", None)
    if run is None:
        parser.error(f"the '{args.command}' command is not available in this installation. "
                     f"{MISSING.get(args.command, '')}".strip())
    sys.exit(run(args) or 0)
