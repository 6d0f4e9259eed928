"""Stripe-Signature verification against every signing secret an integration holds (rotation overlap).

The HMAC comparison is the stripe SDK's (``stripe.WebhookSignature.verify_header``); this module adds the
timestamp tolerance in both directions and answers that say which of the guide's troubleshooting cases applies.
Pure: no I/O, the clock is a parameter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import stripe

Problem = Literal["missing", "malformed", "no_secret", "mismatch", "timestamp"]

MESSAGES: dict[Problem, str] = {
    "missing": "No Stripe-Signature header: this URL only accepts webhooks signed by Stripe.",
    "malformed": "The Stripe-Signature header could not be parsed (expected t=<timestamp>,v1=<signature>).",
    "no_secret": (
        "No usable webhook signing secret is stored for this integration: save the endpoint's Signing secret "
        "(whsec_...) from Stripe."
    ),
    "mismatch": (
        "The Stripe-Signature header didn't match the stored webhook secret: copy the Signing secret (whsec_...) "
        "from Stripe, not the endpoint URL, and check Stripe sends to this exact URL."
    ),
    "timestamp": (
        "The Stripe-Signature timestamp is outside the tolerance of {tolerance:.0f} s: check this server's clock "
        "(clock skew) or a replayed delivery."
    ),
}


class SignatureRejected(Exception):
    """The delivery must not be processed; ``message`` is safe to answer (no secret, no header value)."""

    def __init__(self, problem: Problem, tolerance: float = 0.0) -> None:
        self.problem = problem
        self.message = MESSAGES[problem].format(tolerance=tolerance)
        super().__init__(self.message)


@dataclass(frozen=True)
class Verified:
    secret_index: int  # which of the integration's secrets matched (0 = first line)
    timestamp: int


def parse_timestamp(header: str) -> int:
    """The ``t=`` of a Stripe-Signature header, requiring at least one ``v1=`` entry."""
    timestamp: int | None = None
    has_v1 = False
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise SignatureRejected("malformed") from None
        elif key == stripe.WebhookSignature.EXPECTED_SCHEME and value:
            has_v1 = True
    if timestamp is None or not has_v1:
        raise SignatureRejected("malformed")
    return timestamp


def verify(payload: bytes, header: str | None, secrets: Sequence[str], *, tolerance: float, now: float) -> Verified:
    """Raise ``SignatureRejected`` unless one of ``secrets`` signed ``payload`` within ``tolerance`` of ``now``."""
    if not header or not header.strip():
        raise SignatureRejected("missing")
    timestamp = parse_timestamp(header)
    if not secrets:
        raise SignatureRejected("no_secret")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise SignatureRejected("mismatch") from None
    for index, secret in enumerate(secrets):
        try:
            # tolerance is checked below, in both directions (the SDK only rejects old timestamps)
            stripe.WebhookSignature.verify_header(text, header, secret, tolerance=None)
        except stripe.SignatureVerificationError:
            continue
        if abs(now - timestamp) > tolerance:
            raise SignatureRejected("timestamp", tolerance)
        return Verified(secret_index=index, timestamp=timestamp)
    raise SignatureRejected("mismatch")
