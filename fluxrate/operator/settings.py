"""Operator configuration: flags, each with an environment variable of the same meaning (Helm sets those)."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field

from fluxrate.operator.sharding import Shard


@dataclass(frozen=True)
class SmtpSettings:
    host: str | None = None
    port: int = 587
    security: str = "starttls"  # starttls | tls | none
    username: str | None = None
    password_file: str | None = None
    from_address: str = "billing@fluxrate.invalid"
    timeout: float = 30.0

    @property
    def configured(self) -> bool:
        return bool(self.host)


@dataclass(frozen=True)
class OperatorSettings:
    public_base_url: str
    namespaces: tuple[str, ...] = ()
    stripe_api_base: str | None = None
    stripe_max_network_retries: int = 2
    rate_limit_test: float = 25.0
    rate_limit_live: float = 100.0
    reconcile_interval: float = 600.0
    resync_interval: float = 300.0
    retry_delay: float = 10.0  # first backoff after a temporary Stripe failure
    # How long a managed webhook endpoint replaced for another API version keeps delivering (and its signing secret
    # keeps verifying) before the operator deletes it; the deletion happens at the first resync after it.
    endpoint_overlap: float = 3600.0
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    liveness_endpoint: str | None = None
    metrics_port: int = 0  # /metrics (BillingMetrics) on 0.0.0.0:<port>; 0: not served. The CLI defaults to 9090.
    peering: str | None = None
    priority: int = 0
    # HA: a standby replica (not the highest priority) waits this long before joining the peering, so that replicas
    # started together never both act (kopf 1.45 can leave an object unhandled after two peers race to add its
    # finalizer; docs/install.md "High availability").
    standby_delay: float = 0.0
    log_level: str = "INFO"
    # Sharding (chart: operator.shards): this process serves the namespaces whose stable hash mod shard_count is
    # shard_index (fluxrate.operator.sharding); 1 shard: every namespace, as without sharding.
    shard_index: int = 0
    shard_count: int = 1


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name, default)


def add_operator_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--public-base-url",
        default=_env("FLUXRATE_PUBLIC_BASE_URL"),
        help="public HTTPS base URL of the webhook receiver, e.g. https://billing.example.com "
        "(env FLUXRATE_PUBLIC_BASE_URL); webhook URLs are <base>/api/v1/webhooks/stripe/<namespace>/<name>",
    )
    parser.add_argument(
        "--namespace", "-n", action="append", dest="namespaces",
        default=[n for n in (_env("FLUXRATE_WATCH_NAMESPACES") or "").split(",") if n],
        help="namespace to watch; repeat for several (env FLUXRATE_WATCH_NAMESPACES, comma-separated); "
        "default: all namespaces",
    )
    parser.add_argument(
        "--stripe-api-base", default=_env("FLUXRATE_STRIPE_API_BASE"),
        help="Stripe API base URL; leave unset for the real Stripe API (env FLUXRATE_STRIPE_API_BASE)",
    )
    parser.add_argument("--stripe-max-network-retries", type=int,
                        default=int(_env("FLUXRATE_STRIPE_MAX_NETWORK_RETRIES", "2") or 2))
    parser.add_argument("--rate-limit-test", type=float, default=float(_env("FLUXRATE_RATE_LIMIT_TEST", "25") or 25),
                        help="Stripe requests/s per integration with a test key (env FLUXRATE_RATE_LIMIT_TEST)")
    parser.add_argument("--rate-limit-live", type=float, default=float(_env("FLUXRATE_RATE_LIMIT_LIVE", "100") or 100),
                        help="Stripe requests/s per integration with a live key (env FLUXRATE_RATE_LIMIT_LIVE)")
    parser.add_argument("--reconcile-interval", type=float,
                        default=float(_env("FLUXRATE_RECONCILE_INTERVAL", "600") or 600),
                        help="seconds between checks of open invoices for payments whose webhook was missed")
    parser.add_argument("--resync-interval", type=float, default=float(_env("FLUXRATE_RESYNC_INTERVAL", "300") or 300),
                        help="seconds between re-verifications of integrations and their webhook endpoints")
    parser.add_argument("--retry-delay", type=float, default=float(_env("FLUXRATE_RETRY_DELAY", "10") or 10),
                        help="seconds before the first retry after a temporary failure; doubles on each retry")
    smtp = parser.add_argument_group("email (SMTP)")
    smtp.add_argument("--smtp-host", default=_env("FLUXRATE_SMTP_HOST"), help="SMTP server; unset disables email")
    smtp.add_argument("--smtp-port", type=int, default=int(_env("FLUXRATE_SMTP_PORT", "587") or 587))
    smtp.add_argument("--smtp-security", choices=["starttls", "tls", "none"],
                      default=_env("FLUXRATE_SMTP_SECURITY", "starttls"))
    smtp.add_argument("--smtp-username", default=_env("FLUXRATE_SMTP_USERNAME"))
    smtp.add_argument("--smtp-password-file", default=_env("FLUXRATE_SMTP_PASSWORD_FILE"),
                      help="file holding the SMTP password (mount it from a Secret); never pass it on the command line")
    smtp.add_argument("--smtp-from", default=_env("FLUXRATE_SMTP_FROM", "billing@fluxrate.invalid"),
                      help="From address of invoice emails")
    parser.add_argument("--liveness", default=_env("FLUXRATE_LIVENESS_ENDPOINT"),
                        help="kopf liveness endpoint, e.g. http://0.0.0.0:8080/healthz")
    parser.add_argument("--metrics-port", type=int, default=int(_env("FLUXRATE_METRICS_PORT", "9090") or 9090),
                        help="port of the Prometheus /metrics endpoint (billing metrics, Stripe request outcomes) "
                        "on all interfaces; 0 disables it (env FLUXRATE_METRICS_PORT)")
    parser.add_argument("--peering", default=_env("FLUXRATE_PEERING"),
                        help="kopf peering name for HA (several replicas, one active); default: standalone")
    parser.add_argument("--priority", type=int, default=int(_env("FLUXRATE_PRIORITY", "0") or 0),
                        help="kopf peering priority of this replica")
    parser.add_argument("--standby-delay", type=float,
                        default=float(_env("FLUXRATE_STANDBY_DELAY", "0") or 0),
                        help="seconds a standby replica waits before joining the kopf peering (env "
                        "FLUXRATE_STANDBY_DELAY; the chart sets it on every replica but the highest priority)")
    parser.add_argument("--shard-index", type=int, default=int(_env("FLUXRATE_SHARD_INDEX", "0") or 0),
                        help="this operator's shard, 0 <= index < --shard-count (env FLUXRATE_SHARD_INDEX)")
    parser.add_argument("--shard-count", type=int, default=int(_env("FLUXRATE_SHARD_COUNT", "1") or 1),
                        help="number of operator shards; each serves the namespaces whose blake2b hash mod the "
                        "count is its index (env FLUXRATE_SHARD_COUNT); default 1: every namespace")
    parser.add_argument("--log-level", default=_env("FLUXRATE_LOG_LEVEL", "INFO"),
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def settings_from_args(args: argparse.Namespace) -> OperatorSettings:
    try:
        Shard(args.shard_index, args.shard_count)
    except ValueError as exc:
        raise SystemExit(f"fluxrate operator: {exc} (--shard-index/FLUXRATE_SHARD_INDEX, "
                         "--shard-count/FLUXRATE_SHARD_COUNT: the chart's operator.shards sets both)") from None
    if not args.public_base_url:
        raise SystemExit(
            "fluxrate operator: set --public-base-url (or FLUXRATE_PUBLIC_BASE_URL) to the public HTTPS URL "
            "where Stripe reaches the webhook receiver, e.g. https://billing.example.com"
        )
    return OperatorSettings(
        public_base_url=args.public_base_url.rstrip("/"),
        namespaces=tuple(args.namespaces or ()),
        stripe_api_base=args.stripe_api_base,
        stripe_max_network_retries=args.stripe_max_network_retries,
        rate_limit_test=args.rate_limit_test,
        rate_limit_live=args.rate_limit_live,
        reconcile_interval=args.reconcile_interval,
        resync_interval=args.resync_interval,
        retry_delay=args.retry_delay,
        smtp=SmtpSettings(
            host=args.smtp_host,
            port=args.smtp_port,
            security=args.smtp_security,
            username=args.smtp_username,
            password_file=args.smtp_password_file,
            from_address=args.smtp_from,
        ),
        liveness_endpoint=args.liveness,
        metrics_port=args.metrics_port,
        peering=args.peering,
        priority=args.priority,
        standby_delay=args.standby_delay,
        log_level=args.log_level,
        shard_index=args.shard_index,
        shard_count=args.shard_count,
    )
