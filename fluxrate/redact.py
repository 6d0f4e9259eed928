"""Defence in depth: mask anything that looks like a Stripe key or signing secret in text and log records.

Secrets are never put into messages on purpose; this catches what a library might echo back.
"""

from __future__ import annotations

import logging
import re

SECRET_PATTERN = re.compile(r"\b((?:sk|rk|pk)_(?:live|test)_|whsec_)[A-Za-z0-9+/=_-]{4,}")


def redact(text: str) -> str:
    return SECRET_PATTERN.sub(lambda m: m.group(1) + "[REDACTED]", text)


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
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
