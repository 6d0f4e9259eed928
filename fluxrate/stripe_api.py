"""Construction of the Stripe SDK client used by the operator and the webhook receiver.

Production talks to Stripe's default API base; tests and the sandbox pass ``api_base`` to point the very
same SDK code path at the Stripe stand-in (plain ``http://`` on loopback works: the SDK only prefixes
the base to the request path).
"""

from __future__ import annotations

import logging

import stripe

# The SDK logs whole response bodies at DEBUG, and a webhook endpoint's body carries its signing secret.
logging.getLogger("stripe").setLevel(logging.INFO)


def build_stripe_client(
    api_key: str, *, api_base: str | None = None, max_network_retries: int = 2
) -> stripe.StripeClient:
    return stripe.StripeClient(
        api_key,
        base_addresses={"api": api_base} if api_base else {},
        http_client=stripe.AIOHTTPClient(),
        max_network_retries=max_network_retries,
    )


async def close_stripe_client(client: stripe.StripeClient) -> None:
    """Close the aiohttp session the SDK opened lazily.

    ``stripe.StripeClient`` has no public close method in v16; without this, aiohttp warns about an
    unclosed client session when the event loop ends.
    """
    http_client = client._requestor._get_http_client()
    if isinstance(http_client, stripe.AIOHTTPClient) and http_client._cached_session is None:
        return  # never used: closing would first create a session
    await http_client.close_async()
