"""The events a webhook endpoint set up by hand delivers: ``MissingEvents`` names the types to tick in Stripe.

A managed endpoint is kept at ``models.endpoint_events`` by fluxrate itself (created with them, drift repaired). An
endpoint made by hand is only read: once per reconcile (and resync), with one listing of the account's endpoints.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import stripe

from fluxrate import conditions as cond
from fluxrate.operator.stripe_clients import IntegrationClient
from fluxrate.stripe_errors import is_auth_error

MISSING_EVENTS = "MissingEvents"
LIST_PAGE = 100  # webhook endpoints per page (Stripe's maximum); an account has at most 16
MAX_PAGES = 5


def missing_events(endpoints: Iterable[Mapping[str, Any]], url: str, required: Sequence[str]) -> cond.Condition:
    """``MissingEvents`` for the endpoints of the account (as Stripe lists them) that deliver to ``url``.

    The types enabled on any enabled endpoint of that URL count (Stripe sends each event to each endpoint); ``*``
    enables every type. No endpoint for the URL: Unknown, since the deliveries may come from elsewhere (the Stripe
    CLI, another account); that endpoint is what ``WebhookSecretConfigured`` asks for anyway.
    """
    mine = [e for e in endpoints if e.get("url") == url]
    live = [e for e in mine if e.get("status") != "disabled"]
    if not mine:
        return cond.Condition(MISSING_EVENTS, "Unknown", "EndpointNotFound",
                              f"No webhook endpoint of this Stripe account delivers to {url}: in the Stripe Dashboard, "
                              f"Developers > Webhooks, add an endpoint for it with the events: {', '.join(required)}.")
    if not live:
        ids = ", ".join(str(e.get("id")) for e in mine)
        return cond.Condition(MISSING_EVENTS, "True", "EndpointDisabled",
                              f"The webhook endpoint {ids} for {url} is disabled, so Stripe delivers no events: in "
                              "the Stripe Dashboard, Developers > Webhooks, enable it.")
    enabled = {t for e in live for t in (e.get("enabled_events") or [])}
    missing = [] if "*" in enabled else [t for t in required if t not in enabled]
    ids = ", ".join(str(e.get("id")) for e in live)
    if missing:
        return cond.Condition(MISSING_EVENTS, "True", "EventsNotEnabled",
                              f"In the Stripe Dashboard, Developers > Webhooks > {ids}, add the events: "
                              f"{', '.join(missing)}. Until then Stripe does not send them to fluxrate.")
    return cond.Condition(MISSING_EVENTS, "False", "AllEventsEnabled",
                          f"Webhook endpoint {ids} delivers every event type fluxrate needs.")


async def list_endpoints(entry: IntegrationClient) -> list[dict[str, Any]]:
    """The account's webhook endpoints, every page (one request for any account: Stripe allows 16)."""
    found: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": LIST_PAGE}
    for _ in range(MAX_PAGES):
        page = await entry.call(lambda c, p=dict(params): c.v1.webhook_endpoints.list_async(params=p))
        data = [e.to_dict() for e in page.data]
        found += data
        if not page.has_more or not data:
            break
        params["starting_after"] = data[-1]["id"]
    return found


async def subscription_condition(entry: IntegrationClient, url: str, required: Sequence[str]) -> cond.Condition:
    """``MissingEvents`` for a hand-made endpoint; Unknown when Stripe cannot be asked (never a retry or a Stop:
    the integration works without it, and the next resync asks again)."""
    try:
        endpoints = await list_endpoints(entry)
    except stripe.StripeError as exc:
        if is_auth_error(exc) or isinstance(exc, stripe.PermissionError):
            detail = ("the key may not read webhook endpoints: grant a restricted key Webhook Endpoints read, or "
                      "check the endpoint's events yourself")
        else:
            detail = f"Stripe could not be asked ({type(exc).__name__}); asked again at the next resync"
        return cond.Condition(MISSING_EVENTS, "Unknown", "EndpointsNotReadable",
                              f"The webhook endpoint for {url} could not be checked: {detail}.")
    return missing_events(endpoints, url, required)
