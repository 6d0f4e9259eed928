"""Defence in depth: mask anything that looks like a Stripe key or signing secret in text and log records.

Secrets are never put into messages on purpose; this catches what a library might echo back.
"""

from __future__ import annotations

import logging
import re

SECRET_PATTERN = re.compile(r"\b((?:sk|rk|pk)_(?:live|test)_|whsec_)[A-Za-z0-9+/=_-]{4,}")
MARKERS = ("_live_", "_test_", "whsec_")  # every match contains one: a cheap test before the regex


def redact(text: str) -> str:
    if not any(marker in text for marker in MARKERS):
        return text
    return SECRET_PATTERN.sub(lambda m: m.group(1) + "[REDACTED]", text)


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        # formatted once here; the formatter's getMessage() then has nothing left to format
        record.msg, record.args = redact(record.getMessage()), None
        if record.exc_info and record.exc_info[1] is not None:
            exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info, record.exc_text = None, redact(exc_text)
        return True


def install(logger: logging.Logger | None = None) -> None:
    """Attach the filter to the handlers of ``logger`` (root by default) so every record passes through it."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
