"""Receiver configuration: flags, each with a ``FLUXRATE_RECEIVER_*`` environment variable (Helm sets those)."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

ENV_PREFIX = "FLUXRATE_RECEIVER_"
MIB = 1024 * 1024


@dataclass(frozen=True)
class ReceiverSettings:
    host: str = "0.0.0.0"
    port: int = 8080
    signature_tolerance: float = 300.0  # seconds a Stripe-Signature timestamp may differ from our clock
    max_body_bytes: int = MIB
    secret_cache_ttl: float = 60.0  # seconds an integration's settings and signing secrets are reused
    status_flush_interval: float = 2.0  # seconds between coalesced writes of StripeIntegration.status.deliveries
    log_level: str = "INFO"
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    dedupe_size: int = 10_000  # recently applied event ids remembered in memory
    # At most one Event per object and reason per interval for repetitive traffic: signature failures on an
    # integration, duplicate deliveries on an invoice (a redelivery storm must not become an Event storm).
    signature_event_interval: float = 60.0
    shutdown_timeout: float = 30.0  # seconds in-flight deliveries get to finish on shutdown

    def serves(self, namespace: str) -> bool:
        return not self.namespaces or namespace in self.namespaces


def _env(name: str, default: str) -> str:
    return os.environ.get(ENV_PREFIX + name, default)


def add_receiver_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = ReceiverSettings()
    parser.add_argument("--host", default=_env("HOST", defaults.host),
                        help=f"address to listen on (env {ENV_PREFIX}HOST)")
    parser.add_argument("--port", type=int, default=int(_env("PORT", str(defaults.port))),
                        help=f"port to listen on (env {ENV_PREFIX}PORT)")
    parser.add_argument("--signature-tolerance", type=float,
                        default=float(_env("SIGNATURE_TOLERANCE", str(defaults.signature_tolerance))),
                        help="seconds a Stripe-Signature timestamp may be away from this server's clock "
                        f"(env {ENV_PREFIX}SIGNATURE_TOLERANCE)")
    parser.add_argument("--max-body-bytes", type=int,
                        default=int(_env("MAX_BODY_BYTES", str(defaults.max_body_bytes))),
                        help=f"largest webhook body accepted; larger ones get 413 (env {ENV_PREFIX}MAX_BODY_BYTES)")
    parser.add_argument("--secret-cache-ttl", type=float,
                        default=float(_env("SECRET_CACHE_TTL", str(defaults.secret_cache_ttl))),
                        help="seconds integration settings and signing secrets are cached; a signature miss "
                        f"refreshes them at once (env {ENV_PREFIX}SECRET_CACHE_TTL)")
    parser.add_argument("--status-flush-interval", type=float,
                        default=float(_env("STATUS_FLUSH_INTERVAL", str(defaults.status_flush_interval))),
                        help="seconds between coalesced writes of delivery counts to StripeIntegration status "
                        f"(env {ENV_PREFIX}STATUS_FLUSH_INTERVAL)")
    parser.add_argument("--log-level", default=_env("LOG_LEVEL", defaults.log_level),
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"], help=f"env {ENV_PREFIX}LOG_LEVEL")
    parser.add_argument("--namespace", "-n", action="append", dest="namespaces", default=None,
                        help="only serve integrations in this namespace; repeat for several "
                        f"(env {ENV_PREFIX}NAMESPACES, comma-separated; the flags replace it); default: all")


def settings_from_args(args: argparse.Namespace) -> ReceiverSettings:
    if args.max_body_bytes <= 0 or args.signature_tolerance <= 0:
        raise SystemExit("fluxrate receiver: --max-body-bytes and --signature-tolerance must be positive")
    return ReceiverSettings(
        host=args.host,
        port=args.port,
        signature_tolerance=args.signature_tolerance,
        max_body_bytes=args.max_body_bytes,
        secret_cache_ttl=args.secret_cache_ttl,
        status_flush_interval=args.status_flush_interval,
        log_level=args.log_level,
        namespaces=tuple(dict.fromkeys(args.namespaces or [n for n in _env("NAMESPACES", "").split(",") if n])),
    )
