"""Logging of the receiver: secrets masked on every handler, one structured line per delivery."""

from __future__ import annotations

import json
import logging
from typing import Any

from fluxrate import redact

DELIVERY_LOGGER = "fluxrate.webhook_receiver.delivery"
delivery_log = logging.getLogger(DELIVERY_LOGGER)


def configure_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # the delivery line says more
    # One record per delivery: skip what the format never shows (the logging HOWTO's "Optimization").
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging._srcfile = None  # type: ignore[attr-defined]  # no caller lookup (sys._getframe) per record
    redact.install()


def delivery_line(fields: dict[str, Any]) -> str:
    """A JSON object of the delivery's facts (never the payload, the signature header or a secret)."""
    return json.dumps({k: v for k, v in fields.items() if v is not None}, sort_keys=True, separators=(",", ":"))


def log_delivery(fields: dict[str, Any]) -> None:
    level = logging.WARNING if fields.get("outcome") in ("signature_failed", "error") else logging.INFO
    delivery_log.log(level, "delivery %s", delivery_line(fields))
