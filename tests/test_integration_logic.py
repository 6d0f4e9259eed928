"""Pure parts of StripeIntegration reconciliation: what is sent to Stripe, computed as data."""

from fluxrate import webhook_url
from fluxrate.models import DEFAULT_ENABLED_EVENTS
from fluxrate.operator.integrations import (
    build_webhook_endpoint_params,
    endpoint_drift,
    endpoint_idempotency_key,
    next_step_for_webhook_secret,
    owned_secret_name,
)


def test_webhook_url_follows_the_receiver_route() -> None:
    assert webhook_url("https://billing.example.com/", "team-a", "prod") == (
        "https://billing.example.com/api/v1/webhooks/stripe/team-a/prod"
    )


def test_endpoint_params_carry_url_events_and_identity() -> None:
    params = build_webhook_endpoint_params("https://x/y", DEFAULT_ENABLED_EVENTS, "ns", "prod", "uid-1")
    assert params["url"] == "https://x/y"
    assert params["enabled_events"] == list(DEFAULT_ENABLED_EVENTS)
    assert params["metadata"] == {"fluxrate_namespace": "ns", "fluxrate_integration": "prod", "fluxrate_uid": "uid-1"}


def test_no_drift_when_endpoint_matches_in_any_event_order() -> None:
    endpoint = {"url": "https://x/y", "enabled_events": list(reversed(DEFAULT_ENABLED_EVENTS)), "status": "enabled"}
    assert endpoint_drift(endpoint, "https://x/y", DEFAULT_ENABLED_EVENTS) == {}


def test_drift_in_url_events_and_disabled_is_repaired() -> None:
    endpoint = {"url": "https://old/y", "enabled_events": ["charge.succeeded"], "status": "disabled"}
    assert endpoint_drift(endpoint, "https://x/y", DEFAULT_ENABLED_EVENTS) == {
        "url": "https://x/y",
        "enabled_events": list(DEFAULT_ENABLED_EVENTS),
        "disabled": False,
    }


def test_idempotency_key_is_stable_per_endpoint_generation() -> None:
    assert endpoint_idempotency_key("u", None) == endpoint_idempotency_key("u", None)
    assert endpoint_idempotency_key("u", None) != endpoint_idempotency_key("u", "we_1")
    assert endpoint_idempotency_key("u", None) != endpoint_idempotency_key("v", None)


def test_owned_secret_name_stays_a_valid_name() -> None:
    assert owned_secret_name("prod") == "prod-webhook-signing"
    assert len(owned_secret_name("a" * 253)) <= 253


def test_next_step_names_url_events_and_the_secret_to_create() -> None:
    url = "https://x/api/v1/webhooks/stripe/ns/prod"
    text = next_step_for_webhook_secret(url, DEFAULT_ENABLED_EVENTS, "ns", "prod")
    assert "https://x/api/v1/webhooks/stripe/ns/prod" in text
    assert all(event in text for event in DEFAULT_ENABLED_EVENTS)
    assert "whsec_" in text and "webhookSecretRef" in text
