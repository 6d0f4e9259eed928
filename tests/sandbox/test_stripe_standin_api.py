"""The Stripe stand-in's REST API, exercised only through the official SDK."""

from __future__ import annotations

import asyncio
import time

import pytest
import stripe

from fluxrate.stripe_api import build_stripe_client, close_stripe_client
from fluxrate_sandbox.stripe_standin import StripeStandin
from tests.sandbox.stripe_fixtures import account, client, link_params, receiver, standin

__all__ = ["account", "client", "receiver", "standin"]


async def test_unknown_key_is_401_with_masked_key(standin: StripeStandin) -> None:
    key = "sk_test_51NotRegisteredKeyxyz9"
    c = build_stripe_client(key, api_base=standin.url, max_network_retries=0)
    try:
        with pytest.raises(stripe.AuthenticationError) as info:
            await c.v1.accounts.retrieve_current_async()
    finally:
        await close_stripe_client(c)
    assert info.value.http_status == 401
    assert "Invalid API Key provided: sk_test_" in str(info.value.user_message)
    assert str(info.value.user_message).endswith("xyz9")
    assert "NotRegistered" not in str(info.value.user_message)
    assert info.value.request_id and info.value.request_id.startswith("req_")


async def test_revoked_key_is_rejected(standin: StripeStandin, client: stripe.StripeClient,
                                       account: tuple[str, str]) -> None:
    acct = await client.v1.accounts.retrieve_current_async()
    assert acct.id == account[0]
    assert acct.object == "account"
    assert acct.settings.dashboard.display_name
    standin.revoke_key(account[1])
    with pytest.raises(stripe.AuthenticationError):
        await client.v1.accounts.retrieve_current_async()


async def test_livemode_key_creates_livemode_objects(standin: StripeStandin) -> None:
    _, key = standin.add_account(livemode=True)
    assert key.startswith("sk_live_")
    c = build_stripe_client(key, api_base=standin.url, max_network_retries=0)
    try:
        link = await c.v1.payment_links.create_async(params=link_params())
    finally:
        await close_stripe_client(c)
    assert link.livemode is True
    assert link.url.startswith("https://buy.stripe.com/") and "/test_" not in link.url


async def test_create_and_retrieve_payment_link(client: stripe.StripeClient) -> None:
    params = link_params(
        amount=1250,
        quantity=2,
        restrictions={"completed_sessions": {"limit": 1}},
        after_completion={"type": "redirect", "redirect": {"url": "https://example.com/thanks"}},
    )
    link = await client.v1.payment_links.create_async(params=params)
    assert link.id.startswith("plink_")
    assert link.object == "payment_link"
    assert link.active is True
    assert link.url.startswith("https://buy.stripe.com/test_")
    assert link.currency == "usd"
    assert link.metadata.to_dict() == params["metadata"]
    assert link.payment_intent_data.metadata.to_dict() == params["payment_intent_data"]["metadata"]
    assert link.restrictions.completed_sessions.limit == 1
    assert link.after_completion.redirect.url == "https://example.com/thanks"
    assert "line_items" not in link
    again = await client.v1.payment_links.retrieve_async(link.id)
    assert again.to_dict() == link.to_dict()
    items = await client.v1.payment_links.line_items.list_async(link.id)
    assert [(li.quantity, li.price.unit_amount, li.amount_total, li.description) for li in items.data] == [
        (2, 1250, 2500, "Invoice inv-1")
    ]


@pytest.mark.parametrize(
    ("mutate", "param", "code"),
    [
        (lambda p: p.pop("line_items"), "line_items", "parameter_missing"),
        (lambda p: p["line_items"][0]["price_data"].update(unit_amount="12.5"),
         "line_items[0][price_data][unit_amount]", "parameter_invalid_integer"),
        (lambda p: p["line_items"][0]["price_data"].update(currency="xyz"),
         "line_items[0][price_data][currency]", None),
        (lambda p: p["line_items"][0]["price_data"].update(product_data={"description": "d"}),
         "line_items[0][price_data][product_data][name]", "parameter_missing"),
        (lambda p: p["line_items"][0].pop("quantity"), "line_items[0][quantity]", "parameter_missing"),
        (lambda p: p.update(bogus="1"), "bogus", "parameter_unknown"),
        (lambda p: p.update(after_completion={"type": "redirect"}), "after_completion[redirect]",
         "parameter_missing"),
        (lambda p: p.update(metadata={"k": "v" * 501}), "metadata[k]", None),
    ],
)
async def test_invalid_params_are_400_with_param(client: stripe.StripeClient, mutate, param, code) -> None:
    params = link_params()
    mutate(params)
    with pytest.raises(stripe.InvalidRequestError) as info:
        await client.v1.payment_links.create_async(params=params)
    assert info.value.http_status == 400
    assert info.value.param == param
    assert info.value.code == code
    assert info.value.error.type == "invalid_request_error"


@pytest.mark.parametrize(("currency", "amount", "ok"), [
    ("usd", 49, False), ("usd", 50, True), ("jpy", 49, False), ("jpy", 50, True), ("gbp", 29, False),
    ("gbp", 30, True),
])
async def test_minimum_charge_per_currency(client: stripe.StripeClient, currency: str, amount: int,
                                           ok: bool) -> None:
    params = link_params(amount=amount, currency=currency)
    if ok:
        link = await client.v1.payment_links.create_async(params=params)
        assert link.currency == currency
    else:
        with pytest.raises(stripe.InvalidRequestError) as info:
            await client.v1.payment_links.create_async(params=params)
        assert info.value.code == "amount_too_small"


async def test_idempotent_retry_returns_same_link(standin: StripeStandin, client: stripe.StripeClient) -> None:
    params = link_params(invoice="inv-7")
    first = await client.v1.payment_links.create_async(params=params, options={"idempotency_key": "inv-7/1"})
    second = await client.v1.payment_links.create_async(params=params, options={"idempotency_key": "inv-7/1"})
    assert second.id == first.id
    assert second.last_response.headers.get("Idempotent-Replayed") == "true"
    assert first.last_response.headers.get("Idempotent-Replayed") is None
    assert standin.links_created_by_invoice["uid-inv-7"] == 1
    assert len(standin.payment_links) == 1


async def test_idempotency_key_with_other_params_is_idempotency_error(client: stripe.StripeClient) -> None:
    await client.v1.payment_links.create_async(params=link_params(amount=1000), options={"idempotency_key": "k"})
    with pytest.raises(stripe.IdempotencyError) as info:
        await client.v1.payment_links.create_async(params=link_params(amount=2000),
                                                   options={"idempotency_key": "k"})
    assert info.value.http_status == 400
    assert "same parameters" in str(info.value.user_message)


async def test_idempotency_keys_are_scoped_per_account(standin: StripeStandin, client: stripe.StripeClient) -> None:
    _, other_key = standin.add_account()
    other = build_stripe_client(other_key, api_base=standin.url, max_network_retries=0)
    try:
        a = await client.v1.payment_links.create_async(params=link_params(), options={"idempotency_key": "same"})
        b = await other.v1.payment_links.create_async(params=link_params(), options={"idempotency_key": "same"})
        assert a.id != b.id
        with pytest.raises(stripe.InvalidRequestError) as info:
            await other.v1.payment_links.retrieve_async(a.id)
        assert info.value.http_status == 404
        assert info.value.code == "resource_missing"
    finally:
        await close_stripe_client(other)


async def test_failed_attempt_is_not_saved_so_retry_creates_once(standin: StripeStandin) -> None:
    _, key = standin.add_account()
    c = build_stripe_client(key, api_base=standin.url, max_network_retries=0)
    try:
        standin.set_faults(error_rate=1.0)
        with pytest.raises(stripe.APIError) as info:
            await c.v1.payment_links.create_async(params=link_params(), options={"idempotency_key": "r1"})
        assert info.value.http_status == 500
        assert info.value.error.type == "api_error"
        standin.reset_faults()
        link = await c.v1.payment_links.create_async(params=link_params(), options={"idempotency_key": "r1"})
        again = await c.v1.payment_links.create_async(params=link_params(), options={"idempotency_key": "r1"})
    finally:
        await close_stripe_client(c)
    assert again.id == link.id
    assert standin.links_created_by_invoice["uid-inv-1"] == 1
    assert standin.count_requests("POST", "/v1/payment_links", 500) == 1


async def test_update_active_and_metadata(client: stripe.StripeClient) -> None:
    link = await client.v1.payment_links.create_async(params=link_params())
    updated = await client.v1.payment_links.update_async(
        link.id, params={"active": False, "metadata": {"note": "void", "customer_id": ""}}
    )
    assert updated.active is False
    assert updated.metadata.to_dict() == {"invoice_id": "inv-1", "namespace": "default",
                                          "invoice_uid": "uid-inv-1", "note": "void"}
    fetched = await client.v1.payment_links.retrieve_async(link.id)
    assert fetched.active is False
    listed = await client.v1.payment_links.list_async(params={"active": False})
    assert [p.id for p in listed.data] == [link.id]


async def test_list_payment_links_paginates(client: stripe.StripeClient) -> None:
    created = []
    for i in range(5):
        created.append((await client.v1.payment_links.create_async(params=link_params(invoice=f"i{i}"))).id)
        await asyncio.sleep(0)
    page = await client.v1.payment_links.list_async(params={"limit": 2})
    assert len(page.data) == 2 and page.has_more is True
    seen = [p.id async for p in page.auto_paging_iter()]
    assert sorted(seen) == sorted(created)
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.payment_links.list_async(params={"limit": 101})


async def test_webhook_endpoint_crud(client: stripe.StripeClient) -> None:
    created = await client.v1.webhook_endpoints.create_async(
        params={"url": "https://example.com/hook", "enabled_events": ["checkout.session.completed"],
                "description": "fluxrate", "metadata": {"namespace": "default"}}
    )
    assert created.id.startswith("we_")
    assert created.secret.startswith("whsec_")
    assert created.status == "enabled"
    fetched = await client.v1.webhook_endpoints.retrieve_async(created.id)
    assert "secret" not in fetched
    assert fetched.enabled_events == ["checkout.session.completed"]
    updated = await client.v1.webhook_endpoints.update_async(
        created.id, params={"disabled": True, "enabled_events": ["*"]}
    )
    assert updated.status == "disabled" and updated.enabled_events == ["*"] and "secret" not in updated
    listed = await client.v1.webhook_endpoints.list_async()
    assert [e.id for e in listed.data] == [created.id]
    deleted = await client.v1.webhook_endpoints.delete_async(created.id)
    assert deleted.deleted is True and deleted.id == created.id
    with pytest.raises(stripe.InvalidRequestError) as info:
        await client.v1.webhook_endpoints.retrieve_async(created.id)
    assert info.value.http_status == 404


async def test_webhook_endpoint_validation(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as info:
        await client.v1.webhook_endpoints.create_async(params={"url": "https://example.com/hook"})
    assert info.value.param == "enabled_events"
    with pytest.raises(stripe.InvalidRequestError) as info:
        await client.v1.webhook_endpoints.create_async(
            params={"url": "https://example.com/hook", "enabled_events": ["not.a.type"]}
        )
    assert info.value.param == "enabled_events[0]"


async def test_at_most_16_webhook_endpoints(client: stripe.StripeClient) -> None:
    for i in range(16):
        await client.v1.webhook_endpoints.create_async(
            params={"url": f"https://example.com/hook/{i}", "enabled_events": ["*"]}
        )
    with pytest.raises(stripe.InvalidRequestError) as info:
        await client.v1.webhook_endpoints.create_async(
            params={"url": "https://example.com/hook/16", "enabled_events": ["*"]}
        )
    assert "maximum of 16" in str(info.value.user_message)


async def test_rate_limit_per_key(standin: StripeStandin) -> None:
    standin.rate_limit_test = 5
    standin.rate_limit_live = 100
    _, test_key = standin.add_account()
    _, live_key = standin.add_account(livemode=True)
    test_client = build_stripe_client(test_key, api_base=standin.url, max_network_retries=0)
    live_client = build_stripe_client(live_key, api_base=standin.url, max_network_retries=0)
    try:
        results = await asyncio.gather(
            *(test_client.v1.accounts.retrieve_current_async() for _ in range(20)), return_exceptions=True
        )
        live_results = await asyncio.gather(
            *(live_client.v1.accounts.retrieve_current_async() for _ in range(20)), return_exceptions=True
        )
    finally:
        await close_stripe_client(test_client)
        await close_stripe_client(live_client)
    limited = [r for r in results if isinstance(r, stripe.RateLimitError)]
    ok = [r for r in results if not isinstance(r, Exception)]
    assert 1 <= len(ok) <= 10  # burst of 5 plus refill while the 20 requests are served
    assert len(limited) == 20 - len(ok)
    assert limited[0].http_status == 429 and limited[0].error.code == "rate_limit"  # .code is None: SDK quirk
    assert all(not isinstance(r, Exception) for r in live_results)
    assert standin.rate_limited == len(limited)
    assert standin.count_requests("GET", "/v1/account", 429) == len(limited)


async def test_injected_429_and_error_rate(standin: StripeStandin, client: stripe.StripeClient) -> None:
    standin.set_faults(rate_limit_rate=1.0)
    with pytest.raises(stripe.RateLimitError):
        await client.v1.accounts.retrieve_current_async()
    standin.set_faults(rate_limit_rate=0.0, error_rate=1.0)
    with pytest.raises(stripe.APIError) as info:
        await client.v1.accounts.retrieve_current_async()
    assert info.value.http_status == 500
    standin.reset_faults()
    assert (await client.v1.accounts.retrieve_current_async()).object == "account"


async def test_sdk_retries_500_until_success(standin: StripeStandin, account: tuple[str, str]) -> None:
    c = build_stripe_client(account[1], api_base=standin.url, max_network_retries=2)
    standin.set_faults(error_rate=1.0)

    async def heal() -> None:
        for _ in range(500):
            if standin.injected_errors >= 1:
                break
            await asyncio.sleep(0.01)
        standin.reset_faults()

    try:
        healer = asyncio.create_task(heal())
        acct = await c.v1.accounts.retrieve_current_async()
        await healer
    finally:
        await close_stripe_client(c)
    assert acct.id == account[0]
    assert standin.count_requests("GET", "/v1/account", 500) == 1
    assert standin.count_requests("GET", "/v1/account", 200) == 1


async def test_latency_knob(standin: StripeStandin, client: stripe.StripeClient) -> None:
    standin.set_faults(latency_s=0.3)
    started = time.monotonic()
    await client.v1.accounts.retrieve_current_async()
    assert time.monotonic() - started >= 0.3
    standin.reset_faults()
    started = time.monotonic()
    await client.v1.accounts.retrieve_current_async()
    assert time.monotonic() - started < 0.25


async def test_outages(standin: StripeStandin, client: stripe.StripeClient) -> None:
    await standin.set_outage("503")
    with pytest.raises(stripe.APIError) as info:
        await client.v1.accounts.retrieve_current_async()
    assert info.value.http_status == 503
    await standin.set_outage("refuse")
    with pytest.raises(stripe.APIConnectionError):
        await client.v1.accounts.retrieve_current_async()
    await standin.set_outage(None)
    assert (await client.v1.accounts.retrieve_current_async()).object == "account"


async def test_unrecognized_url_is_404(standin: StripeStandin, client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as info:
        await client.v1.customers.retrieve_async("cus_123")
    assert info.value.http_status == 404
    assert "Unrecognized request URL" in str(info.value.user_message)


async def test_list_is_newest_first(client: stripe.StripeClient) -> None:
    ids = [(await client.v1.payment_links.create_async(params=link_params(invoice=f"n{i}"))).id for i in range(3)]
    listed = await client.v1.payment_links.list_async()
    assert [p.id for p in listed.data] == ids[::-1]


async def test_concurrent_requests_with_same_idempotency_key_create_one_link(
    standin: StripeStandin, client: stripe.StripeClient
) -> None:
    async def create() -> object:
        return await client.v1.payment_links.create_async(params=link_params(), options={"idempotency_key": "c"})

    results = await asyncio.gather(*(create() for _ in range(5)), return_exceptions=True)
    links = [r for r in results if isinstance(r, stripe.PaymentLink)]
    conflicts = [r for r in results if not isinstance(r, stripe.PaymentLink)]
    # a request racing an in-flight one gets Stripe's retryable 409; a later one gets the saved replay
    assert links and len({link.id for link in links}) == 1
    assert all(isinstance(c, stripe.APIError) and c.http_status == 409 for c in conflicts)
    assert len(standin.payment_links) == 1


def test_run_standin_serves_the_demo_key() -> None:
    from fluxrate_sandbox.stripe_standin import DEMO_TEST_KEY, run_standin

    async def main() -> str:
        ready: asyncio.Future[StripeStandin] = asyncio.get_running_loop().create_future()
        server = asyncio.create_task(run_standin(port=0, ready=ready.set_result))
        standin = await ready
        c = build_stripe_client(DEMO_TEST_KEY, api_base=standin.url, max_network_retries=0)
        try:
            acct = await c.v1.accounts.retrieve_current_async()
        finally:
            await close_stripe_client(c)
            server.cancel()
        return str(acct.id)

    assert asyncio.run(main()).startswith("acct_")
