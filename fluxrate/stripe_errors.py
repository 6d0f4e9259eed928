"""How the operator and receiver should react to what the Stripe SDK raised."""

from __future__ import annotations

import stripe


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


def is_auth_error(exc: BaseException) -> bool:
    return isinstance(exc, stripe.AuthenticationError)


def user_message(exc: stripe.StripeError) -> str:
    """Stripe's own message (it never contains the full key), without the SDK's 'Request req_...:' prefix."""
    message = getattr(exc, "user_message", None) or getattr(exc, "_message", None) or str(exc)
    return str(message).strip()
