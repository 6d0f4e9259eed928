"""``fluxrate receiver``: arguments only here; the server is imported when it runs."""

from __future__ import annotations

import argparse

from fluxrate.webhook_receiver.settings import add_receiver_arguments, settings_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_receiver_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from fluxrate.webhook_receiver.runner import run_receiver

    return run_receiver(settings_from_args(args))
