"""How the operator and receiver should react to what the Stripe SDK raised."""

from __future__ import annotations

import re

import stripe

# Stripe refuses a webhook endpoint over the account's limit (16 per mode) with an invalid_request_error that carries
# no error code, only this message: "You have reached the maximum of 16 test webhook endpoints." The limit is
# matched in that sentence, not a "16" or a "limit" anywhere in another refusal (a URL, a param name).
_ENDPOINT_LIMIT = re.compile(r"\bmaximum of \d+ (?:live |test )?webhook endpoints\b", re.IGNORECASE)


def is_retryable(exc: BaseException) -> bool:
    """Network trouble, 429 and 5xx: try again later with backoff."""
    if isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError | stripe.APIError):
        return True
    status = getattr(exc, "http_status", None)
    return isinstance(exc, stripe.StripeError) and isinstance(status, int) and (status >= 500 or status == 429)


def is_not_found(exc: BaseException) -> bool:
    return isinstance(exc, stripe.InvalidRequestError) and (
        getattr(exc, "http_status", None) == 404 or getattr(exc, "code", None) == "resource_missing"
    )


def is_endpoint_limit(exc: BaseException) -> bool:
    """Stripe refused to create a webhook endpoint because the account has as many as it allows."""
    return isinstance(exc, stripe.InvalidRequestError) and bool(_ENDPOINT_LIMIT.search(user_message(exc)))


def is_auth_error(exc: BaseException) -> bool:
    return isinstance(exc, stripe.AuthenticationError)


def user_message(exc: stripe.StripeError) -> str:
    """Stripe's own message (it never contains the full key), without the SDK's 'Request req_...:' prefix."""
    message = getattr(exc, "user_message", None) or getattr(exc, "_message", None) or str(exc)
    return str(message).strip()
