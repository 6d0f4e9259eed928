"""The operator's own Stripe calls, judged by stripe-mock's request validation (Stripe's OpenAPI description).

Every request is built by the operator's code (``build_payment_link_params``, ``build_webhook_endpoint_params``,
``endpoint_drift``, the list params of reconciliation) and sent through the SDK client the operator builds
(``build_stripe_client``), pointed at stripe-mock instead of api.stripe.com. stripe-mock answers 400 to an unknown
parameter, a wrong type or a value outside an enum, so a 2xx here means Stripe's description accepts the call.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
import stripe
from aiolimiter import AsyncLimiter

from fluxrate.models import DEFAULT_ENABLED_EVENTS, PAYMENT_EVENTS, AfterCompletion, InvoiceSpec, endpoint_events
from fluxrate.operator.integrations import build_webhook_endpoint_params, endpoint_drift, endpoint_idempotency_key
from fluxrate.operator.integrations.subscriptions import list_endpoints, subscription_condition
from fluxrate.operator.invoices.receipts import fetch_payment_details
from fluxrate.operator.payment_links import build_payment_link_params, payment_link_idempotency_key
from fluxrate.operator.recovery import list_events, listings
from fluxrate.operator.stripe_clients import IntegrationClient
from fluxrate.stripe_api import build_stripe_client, close_stripe_client
from tests.manifests import example
from tests.stripe_openapi import stripe_schema

KEY = "sk_test_123"  # stripe-mock accepts any test key
HOOK_URL = "https://billing.example.com/webhooks/stripe/billing/acme"


@pytest.fixture
async def client(stripe_mock_url: str) -> AsyncIterator[stripe.StripeClient]:
    c = build_stripe_client(KEY, api_base=stripe_mock_url, max_network_retries=0)
    yield c
    await close_stripe_client(c)


def _sdk_api_versions() -> set[str]:
    """The API versions the pinned SDK's generated types accept for a webhook endpoint (Stripe's own list)."""
    from stripe.params import WebhookEndpointCreateParams

    return set(re.findall(r"'([0-9]{4}-[0-9]{2}-[0-9]{2}\.[a-z]+)'", str(
        WebhookEndpointCreateParams.__annotations__["api_version"])))


def for_stripe_mock(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` as sent, except an ``api_version`` newer than the pinned stripe-mock's description.

    The SDK may pin a newer API version than the newest stripe-mock the Go module proxy serves, whose enum of
    versions then lacks it. Such a value is judged by the SDK's own list of versions instead, and left out of
    what stripe-mock sees; every other parameter stays stripe-mock's to judge.
    """
    version = params.get("api_version")
    if version is None or version <= stripe_schema.api_version():
        return params
    assert version in _sdk_api_versions(), f"{version} is not an API version Stripe knows"
    return {k: v for k, v in params.items() if k != "api_version"}


def _spec(currency: str) -> InvoiceSpec:
    return InvoiceSpec.model_validate(example("Invoice", currency)["spec"])


AFTER_COMPLETIONS = {
    "hosted-message": AfterCompletion(message="Thank you for your payment."),
    "hosted-default": AfterCompletion(),
    "redirect": AfterCompletion(type="redirect", redirect_url="https://example.com/thanks"),
}


@pytest.mark.parametrize("currency", ["USD", "JPY"])
@pytest.mark.parametrize("after", sorted(AFTER_COMPLETIONS))
async def test_payment_link_create_is_accepted(client: stripe.StripeClient, currency: str, after: str) -> None:
    params = build_payment_link_params("billing", "inv-1", "uid-1", _spec(currency), AFTER_COMPLETIONS[after])
    link = await client.v1.payment_links.create_async(
        params=params, options={"idempotency_key": payment_link_idempotency_key(f"uid-{currency}-{after}")})
    assert link.object == "payment_link" and link.id.startswith("plink_")


async def test_payment_link_reads_and_deactivation_are_accepted(client: stripe.StripeClient) -> None:
    """What the operator sends to find, check and deactivate an invoice's link."""
    page = await client.v1.payment_links.list_async(params={"limit": 100})  # find_link, first page
    assert page.object == "list"
    page = await client.v1.payment_links.list_async(params={"limit": 100, "starting_after": "plink_123"})
    assert page.object == "list"
    link = await client.v1.payment_links.retrieve_async("plink_123")
    assert link.object == "payment_link"
    updated = await client.v1.payment_links.update_async("plink_123", params={"active": False})
    assert updated.object == "payment_link"
    sessions = await client.v1.checkout.sessions.list_async(  # find_missed_payment
        params={"payment_link": "plink_123", "status": "complete", "limit": 10})
    assert sessions.object == "list"


async def test_account_retrieve_is_accepted(client: stripe.StripeClient) -> None:
    account = await client.v1.accounts.retrieve_current_async()
    assert account.object == "account"


async def test_managed_webhook_endpoint_calls_are_accepted(client: stripe.StripeClient) -> None:
    """Create (with the operator's params and idempotency key), read, repair drift, delete."""
    params = build_webhook_endpoint_params(HOOK_URL, list(DEFAULT_ENABLED_EVENTS), "billing", "acme", "uid-1")
    assert params.get("api_version") in (None, stripe.api_version)
    created = await client.v1.webhook_endpoints.create_async(
        params=for_stripe_mock(params), options={"idempotency_key": endpoint_idempotency_key("uid-1", None)})
    assert created.object == "webhook_endpoint"
    endpoint = await client.v1.webhook_endpoints.retrieve_async("we_123")
    assert endpoint.object == "webhook_endpoint"
    drifted: dict[str, Any] = {"url": "https://elsewhere.example.com/hook", "enabled_events": ["*"],
                               "status": "disabled"}
    update = endpoint_drift(drifted, HOOK_URL, list(DEFAULT_ENABLED_EVENTS))
    assert set(update) == {"url", "enabled_events", "disabled"}
    repaired = await client.v1.webhook_endpoints.update_async("we_123", params=update)
    assert repaired.object == "webhook_endpoint"
    deleted = await client.v1.webhook_endpoints.delete_async("we_123")
    assert deleted.deleted is True


async def test_managed_endpoint_repair_adds_the_after_payment_types(client: stripe.StripeClient) -> None:
    """An endpoint an older fluxrate registered (the old seven): the repair's update is accepted."""
    update = endpoint_drift({"url": HOOK_URL, "enabled_events": list(PAYMENT_EVENTS), "status": "enabled"},
                            HOOK_URL, endpoint_events(list(PAYMENT_EVENTS)))
    assert set(update) == {"enabled_events"} and sorted(update["enabled_events"]) == sorted(DEFAULT_ENABLED_EVENTS)
    repaired = await client.v1.webhook_endpoints.update_async("we_123", params=update)
    assert repaired.object == "webhook_endpoint"


def _entry(client: stripe.StripeClient) -> IntegrationClient:
    return IntegrationClient(client=client, limiter=AsyncLimiter(100, 1), mode="test", fingerprint="stripe-mock")


async def test_events_recovery_listings_are_accepted(client: stripe.StripeClient) -> None:
    """A recovery pass's two listings of ``GET /v1/events`` (``recovery.listings``), paged, in both modes."""
    for undelivered_only in (True, False):
        for params in listings(1_700_000_000, undelivered_only):
            events = await list_events(_entry(client), params)
            assert all(e["object"] == "event" for e in events)
    page = await client.v1.events.list_async(params={**listings(1_700_000_000, True)[0], "limit": 100,
                                                     "starting_after": "evt_123"})
    assert page.object == "list"


async def test_hand_made_endpoint_listing_is_accepted(client: stripe.StripeClient) -> None:
    """``MissingEvents``: the operator's listing of the account's endpoints (paged), and a later page."""
    endpoints = await list_endpoints(_entry(client))
    assert endpoints and all(e["object"] == "webhook_endpoint" for e in endpoints)
    page = await client.v1.webhook_endpoints.list_async(params={"limit": 100, "starting_after": "we_123"})
    assert page.object == "list"
    condition = await subscription_condition(_entry(client), HOOK_URL, list(DEFAULT_ENABLED_EVENTS))
    assert condition.type == "MissingEvents" and condition.reason != "EndpointsNotReadable"


async def test_payment_intent_with_its_latest_charge_for_the_receipt_is_accepted(client: stripe.StripeClient) -> None:
    """The receipt's one Stripe call: the PaymentIntent with ``expand[]=latest_charge``."""
    details = await fetch_payment_details(_entry(client), "pi_123")
    intent = await client.v1.payment_intents.retrieve_async("pi_123", params={"expand": ["latest_charge"]})
    charge = intent.to_dict()["latest_charge"]
    assert isinstance(charge, dict) and charge["object"] == "charge"  # expanded, as the receipt reads it
    assert details.receipt_url == charge.get("receipt_url")


async def test_stripe_mock_rejects_what_stripe_would(client: stripe.StripeClient) -> None:
    """The judge judges: an unknown parameter and a value outside an enum are refused."""
    params = build_payment_link_params("billing", "inv-1", "uid-1", _spec("USD"), AfterCompletion())
    with pytest.raises(stripe.InvalidRequestError) as info:
        await client.v1.payment_links.create_async(params={**params, "bogus": "1"})
    assert info.value.http_status == 400
    with pytest.raises(stripe.InvalidRequestError) as info:
        await client.v1.webhook_endpoints.create_async(
            params={"url": HOOK_URL, "enabled_events": ["not.an_event"]})
    assert info.value.http_status == 400
