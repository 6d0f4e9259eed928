from __future__ import annotations

import argparse

from fluxrate.operator.settings import add_operator_arguments, settings_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_operator_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from fluxrate.operator.main import run_operator

    return run_operator(settings_from_args(args))
