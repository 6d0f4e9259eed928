"""Payments through the stand-in and the signed webhooks they produce."""

from __future__ import annotations

import json
import time

import pytest
import stripe

from fluxrate_sandbox.stripe_standin import PaymentLinkUnavailable, StripeStandin
from tests.sandbox.stripe_fixtures import Receiver, account, client, link_params, receiver, standin

__all__ = ["account", "client", "receiver", "standin"]


async def _endpoint(client: stripe.StripeClient, receiver: Receiver, events: list[str] | None = None) -> str:
    created = await client.v1.webhook_endpoints.create_async(
        params={"url": receiver.url, "enabled_events": events or [
            "checkout.session.completed", "checkout.session.async_payment_succeeded",
            "checkout.session.async_payment_failed", "payment_intent.succeeded",
            "payment_intent.payment_failed",
        ]}
    )
    return created.secret


def _verified(receiver: Receiver, secret: str) -> list[stripe.Event]:
    return [
        stripe.Webhook.construct_event(r.body, r.headers["Stripe-Signature"], secret) for r in receiver.received
    ]


async def test_card_payment_delivers_signed_events(
    standin: StripeStandin, client: stripe.StripeClient, receiver: Receiver
) -> None:
    secret = await _endpoint(client, receiver)
    link = await client.v1.payment_links.create_async(params=link_params(amount=1500, quantity=2))
    result = await standin.pay(link.id)
    await result.delivered
    events = _verified(receiver, secret)
    assert [e.type for e in events] == ["checkout.session.completed", "payment_intent.succeeded"]
    session, pi = events[0].data.object, events[1].data.object
    assert session.id.startswith("cs_test_") and session.object == "checkout.session"
    assert session.payment_link == link.id
    assert session.metadata.to_dict() == link.metadata.to_dict()
    assert (session.amount_total, session.currency, session.payment_status, session.status) == (
        3000, "usd", "paid", "complete")
    assert session.payment_intent == pi.id
    assert pi.metadata.to_dict() == link.payment_intent_data.metadata.to_dict()
    assert (pi.amount, pi.amount_received, pi.status) == (3000, 3000, "succeeded")
    for event in events:
        assert event.id.startswith("evt_") and event.object == "event" and event.livemode is False
        assert event.api_version and event.pending_webhooks == 1
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(receiver.received[0].body, receiver.received[0].headers["Stripe-Signature"],
                                       "whsec_wrong")
    assert receiver.received[0].headers["Content-Type"].startswith("application/json")
    assert receiver.received[0].headers["User-Agent"].startswith("Stripe/1.0")


async def test_sessions_are_listed_by_payment_link(
    standin: StripeStandin, client: stripe.StripeClient
) -> None:
    link = await client.v1.payment_links.create_async(params=link_params())
    other = await client.v1.payment_links.create_async(params=link_params(invoice="inv-2"))
    paid = await standin.pay(link.id)
    await standin.pay(link.id, outcome="failed")
    await standin.pay(other.id)
    listed = await client.v1.checkout.sessions.list_async(params={"payment_link": link.id, "status": "complete"})
    assert [s.id for s in listed.data] == [paid.session["id"]]
    fetched = await client.v1.checkout.sessions.retrieve_async(paid.session["id"])
    assert fetched.payment_status == "paid" and fetched.metadata["invoice_id"] == "inv-1"
    pi = await client.v1.payment_intents.retrieve_async(fetched.payment_intent)
    assert pi.status == "succeeded"


async def test_failing_endpoint_gets_the_same_event_until_2xx(
    standin: StripeStandin, client: stripe.StripeClient, receiver: Receiver
) -> None:
    secret = await _endpoint(client, receiver, ["payment_intent.succeeded"])
    link = await client.v1.payment_links.create_async(params=link_params())
    receiver.script = [500, 500]
    result = await standin.pay(link.id)
    await result.delivered
    assert [r.answered for r in receiver.received] == [500, 500, 200]
    assert len(set(receiver.ids())) == 1
    _verified(receiver, secret)  # every attempt is freshly and validly signed
    log = standin.deliveries_for(receiver.ids()[0])
    assert [(a.attempt, a.status) for a in log] == [(1, 500), (2, 500), (3, 200)]


async def test_retries_stop_after_max_attempts(standin: StripeStandin, client: stripe.StripeClient,
                                               receiver: Receiver) -> None:
    await _endpoint(client, receiver, ["payment_intent.succeeded"])
    link = await client.v1.payment_links.create_async(params=link_params())
    receiver.default_status = 503
    standin.dispatcher.max_attempts_test = 3
    await (await standin.pay(link.id)).delivered
    assert [r.answered for r in receiver.received] == [503, 503, 503]


async def test_card_failure_sends_only_payment_failed(
    standin: StripeStandin, client: stripe.StripeClient, receiver: Receiver
) -> None:
    secret = await _endpoint(client, receiver)
    link = await client.v1.payment_links.create_async(params=link_params())
    result = await standin.pay(link.id, outcome="failed")
    await result.delivered
    assert result.session is None
    [event] = _verified(receiver, secret)
    assert event.type == "payment_intent.payment_failed"
    error = event.data.object.last_payment_error
    assert error.code == "card_declined" and error.type == "card_error" and error.message


@pytest.mark.parametrize(("outcome", "expected", "final_status"), [
    ("succeeded", ["checkout.session.completed", "checkout.session.async_payment_succeeded",
                   "payment_intent.succeeded"], "paid"),
    ("failed", ["checkout.session.completed", "checkout.session.async_payment_failed",
                "payment_intent.payment_failed"], "unpaid"),
])
async def test_delayed_payment_flows(
    standin: StripeStandin, client: stripe.StripeClient, receiver: Receiver, outcome, expected, final_status
) -> None:
    secret = await _endpoint(client, receiver)
    link = await client.v1.payment_links.create_async(params=link_params())
    await (await standin.pay(link.id, method="delayed", outcome=outcome)).delivered
    events = _verified(receiver, secret)
    assert [e.type for e in events] == expected
    assert events[0].data.object.payment_status == "unpaid"
    assert events[1].data.object.payment_status == final_status


async def test_duplicate_and_reorder(standin: StripeStandin, client: stripe.StripeClient,
                                     receiver: Receiver) -> None:
    await _endpoint(client, receiver)
    link = await client.v1.payment_links.create_async(params=link_params())
    result = await standin.pay(link.id, method="delayed", duplicate=3, reorder=True)
    await result.delivered
    ids = receiver.ids()
    assert len(ids) == 9
    assert {i: ids.count(i) for i in ids} == {e["id"]: 3 for e in result.events}
    assert receiver.types()[-1] == "checkout.session.completed"
    assert receiver.types()[0] != "checkout.session.completed"


async def test_completed_sessions_limit_and_inactive_link(
    standin: StripeStandin, client: stripe.StripeClient
) -> None:
    link = await client.v1.payment_links.create_async(
        params=link_params(restrictions={"completed_sessions": {"limit": 1}})
    )
    await standin.pay(link.id, outcome="failed")  # a declined card does not complete the session
    await standin.pay(link.id)
    with pytest.raises(PaymentLinkUnavailable, match="limit"):
        await standin.pay(link.id)
    fetched = await client.v1.payment_links.retrieve_async(link.id)
    assert fetched.restrictions.completed_sessions.count == 1
    other = await client.v1.payment_links.create_async(params=link_params(invoice="x"))
    await client.v1.payment_links.update_async(other.id, params={"active": False})
    with pytest.raises(PaymentLinkUnavailable, match="inactive"):
        await standin.pay(other.id)


async def test_only_subscribed_enabled_endpoints_of_the_account_receive(
    standin: StripeStandin, client: stripe.StripeClient, receiver: Receiver
) -> None:
    await _endpoint(client, receiver, ["payment_intent.succeeded"])
    disabled = await client.v1.webhook_endpoints.create_async(
        params={"url": receiver.url + "?disabled", "enabled_events": ["*"]}
    )
    await client.v1.webhook_endpoints.update_async(disabled.id, params={"disabled": True})
    _, other_key = standin.add_account()
    other_account = standin.keys[other_key].account_id
    link = await client.v1.payment_links.create_async(params=link_params())
    await (await standin.pay(link.id)).delivered
    assert receiver.types() == ["payment_intent.succeeded"]
    assert all(e.account_id != other_account for e in standin.webhook_endpoints.values())


async def test_wildcard_endpoint_also_gets_payment_link_events(
    standin: StripeStandin, client: stripe.StripeClient, receiver: Receiver
) -> None:
    await _endpoint(client, receiver, ["*"])
    link = await client.v1.payment_links.create_async(params=link_params(), options={"idempotency_key": "c1"})
    await standin.wait_deliveries_idle()
    [created] = [r.event for r in receiver.received]
    assert created["type"] == "payment_link.created"
    assert created["data"]["object"]["id"] == link.id
    assert created["request"]["idempotency_key"] == "c1" and created["request"]["id"].startswith("req_")


async def test_rolled_secret_signs_with_both_secrets(
    standin: StripeStandin, client: stripe.StripeClient, receiver: Receiver
) -> None:
    old_secret = await _endpoint(client, receiver)
    [endpoint_id] = list(standin.webhook_endpoints)
    new_secret = standin.roll_endpoint_secret(endpoint_id)
    event = standin.make_event("payment_intent.succeeded", {"id": "pi_x", "object": "payment_intent"})
    await standin.deliver(event)
    header = receiver.received[0].headers["Stripe-Signature"]
    assert header.count("v1=") == 2
    for secret in (old_secret, new_secret):
        stripe.Webhook.construct_event(receiver.received[0].body, header, secret)
    standin.expire_old_secrets(endpoint_id)
    await standin.deliver(event)
    header = receiver.received[1].headers["Stripe-Signature"]
    assert header.count("v1=") == 1
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(receiver.received[1].body, header, old_secret)


async def test_deliver_arbitrary_event_to_one_endpoint(
    standin: StripeStandin, client: stripe.StripeClient, receiver: Receiver
) -> None:
    secret = await _endpoint(client, receiver, ["payment_intent.succeeded"])
    [endpoint_id] = list(standin.webhook_endpoints)
    event = standin.make_event("charge.refunded", {"id": "ch_1", "object": "charge", "amount": 500})
    handle = standin.deliver(event, endpoint_id)
    await handle
    [got] = _verified(receiver, secret)
    assert got.id == event["id"] and got.data.object.amount == 500
    assert json.loads(receiver.received[0].body)["created"] <= int(time.time())
    standin.delete_endpoint(endpoint_id)
    await standin.deliver(event, endpoint_id)
    assert len(receiver.received) == 1
    assert standin.delivery_log[-1].error == "endpoint deleted or disabled"


async def test_failed_bank_debit_reports_stripes_insufficient_funds_code(
    standin: StripeStandin, client: stripe.StripeClient
) -> None:
    link = await client.v1.payment_links.create_async(params=link_params())
    assert "created" not in link  # a Payment Link has no `created` in Stripe's API
    result = await standin.pay(link.id, method="delayed", outcome="failed")
    await result.delivered
    pi = await client.v1.payment_intents.retrieve_async(result.payment_intent["id"])
    assert pi.last_payment_error.code == "insufficient_funds"
    assert pi.confirmation_method == "automatic" and pi.status == "requires_payment_method"
