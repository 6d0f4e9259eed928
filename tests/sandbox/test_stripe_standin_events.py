"""``GET /v1/events`` of the Stripe stand-in, as Stripe documents it: ``type`` (a ``*`` wildcard) or ``types`` (up
to 20, not both), ``created`` (a timestamp or a gt/gte/lt/lte range), ``delivery_success``, the last 30 days only,
newest first, paged."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from fluxrate_sandbox.stripe_standin import EVENT_RETENTION_S, StripeStandin
from tests.sandbox.stripe_fixtures import Receiver, account, client, link_params, receiver, standin

__all__ = ["account", "client", "receiver", "standin"]


async def listed(client: stripe.StripeClient, **params: Any) -> list[str]:
    page = await client.v1.events.list_async(params={"limit": 100, **params})
    return [e.id for e in page.data]


async def endpoint(client: stripe.StripeClient, receiver: Receiver) -> Any:
    return await client.v1.webhook_endpoints.create_async(params={"url": receiver.url, "enabled_events": ["*"]})


async def test_delivery_success_false_lists_events_pending_or_failed_at_an_endpoint(
    standin: StripeStandin, client: stripe.StripeClient, receiver: Receiver, account: tuple[str, str],
) -> None:
    await endpoint(client, receiver)
    link = await client.v1.payment_links.create_async(params=link_params())
    await standin.wait_deliveries_idle()
    created = standin.deliveries_for(next(e for e in standin.events.values()
                                          if e.obj["type"] == "payment_link.created").obj["id"])
    assert created and created[-1].status == 200
    receiver.default_status = 500  # the endpoint fails every attempt from now on, until retries give up
    paid = await standin.pay(link.id)
    await paid.delivered
    failed = {e["id"] for e in paid.events}
    assert set(await listed(client, delivery_success="false")) == failed
    assert failed.isdisjoint(await listed(client, delivery_success="true"))
    delivered = await listed(client, delivery_success="true")
    assert len(delivered) == 1 and standin.events[delivered[0]].obj["type"] == "payment_link.created"
    assert all(standin.events[i].obj["pending_webhooks"] == 1 for i in failed)

    receiver.default_status = 200  # a redelivery that succeeds takes the event out of the undelivered ones
    one = sorted(failed)[0]
    await standin.deliver(standin.events[one].obj)
    assert one not in await listed(client, delivery_success="false")
    assert standin.events[one].obj["pending_webhooks"] == 0


async def test_an_event_sent_to_a_disabled_endpoint_stays_undelivered(
    standin: StripeStandin, client: stripe.StripeClient, receiver: Receiver, account: tuple[str, str],
) -> None:
    hook = await endpoint(client, receiver)
    link = await client.v1.payment_links.create_async(params=link_params())
    await standin.wait_deliveries_idle()
    receiver.default_status = 503
    paid = await standin.pay(link.id)
    await client.v1.webhook_endpoints.update_async(hook.id, params={"disabled": True})
    await paid.delivered  # the retries stop at the disabled endpoint: not a success
    assert {e["id"] for e in paid.events} <= set(await listed(client, delivery_success="false"))


async def test_type_types_and_created_filters(
    standin: StripeStandin, client: stripe.StripeClient, account: tuple[str, str],
) -> None:
    link = await client.v1.payment_links.create_async(params=link_params())
    standin.advance_clock(10)
    paid = await standin.pay(link.id)
    await paid.delivered
    by_type = {e["type"]: e for e in paid.events}
    intent = by_type["payment_intent.succeeded"]
    assert await listed(client, type="payment_intent.succeeded") == [intent["id"]]
    assert set(await listed(client, type="checkout.session.*")) == {by_type["checkout.session.completed"]["id"]}
    both = await listed(client, types=["payment_intent.succeeded", "payment_link.created"])
    assert both[0] == intent["id"] and standin.events[both[1]].obj["type"] == "payment_link.created"
    at = intent["created"]
    assert set(await listed(client, created={"gte": at})) == {e["id"] for e in paid.events}
    assert [standin.events[i].obj["type"] for i in await listed(client, created={"lt": at})] == \
        ["payment_link.created"]
    assert set(await listed(client, created=at)) == {e["id"] for e in paid.events}
    assert await listed(client, created={"gt": at}) == []
    assert len(await listed(client, created={"gt": at - 11, "lte": at})) == len(paid.events) + 1

    with pytest.raises(stripe.InvalidRequestError) as both_given:
        await client.v1.events.list_async(params={"type": "charge.refunded", "types": ["charge.refunded"]})
    assert both_given.value.param == "types"
    with pytest.raises(stripe.InvalidRequestError) as too_many:
        await client.v1.events.list_async(params={"types": [f"charge.t{i}" for i in range(21)]})
    assert too_many.value.param == "types"
    with pytest.raises(stripe.InvalidRequestError) as bad_range:
        await client.v1.events.list_async(params={"created": {"after": at}})
    assert bad_range.value.param == "created[after]"


async def test_newest_first_paged_and_only_the_last_thirty_days(
    standin: StripeStandin, client: stripe.StripeClient, account: tuple[str, str],
) -> None:
    old = await client.v1.payment_links.create_async(params=link_params(invoice="old"))
    standin.advance_clock(EVENT_RETENTION_S - 5)
    for index in range(4):
        await client.v1.payment_links.create_async(params=link_params(invoice=f"new-{index}"))
        standin.advance_clock(1)
    ids = await listed(client)
    names = [standin.events[i].obj["data"]["object"]["metadata"]["invoice_id"] for i in ids]
    assert names == ["new-3", "new-2", "new-1", "new-0", "old"]
    first = await client.v1.events.list_async(params={"limit": 2})
    second = await client.v1.events.list_async(params={"limit": 2, "starting_after": first.data[-1].id})
    assert [e.id for e in [*first.data, *second.data]] == ids[:4] and second.has_more
    standin.advance_clock(10)  # the first event is now 30 days old: Stripe no longer lists or retrieves it
    assert "old" not in [standin.events[i].obj["data"]["object"]["metadata"]["invoice_id"]
                         for i in await listed(client)]
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.events.retrieve_async(ids[-1])
    assert old.id  # the link itself is still there
