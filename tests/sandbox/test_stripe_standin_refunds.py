"""Charges, refunds and disputes in the Stripe stand-in, through the official SDK, with their signed webhooks."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from fluxrate_sandbox.stripe_standin import StripeStandin
from tests.sandbox.stripe_fixtures import Receiver, account, client, link_params, receiver, standin

__all__ = ["account", "client", "receiver", "standin"]

AFTER_PAYMENT = ["charge.refunded", "refund.created", "refund.updated", "refund.failed", "charge.dispute.created",
                 "charge.dispute.updated", "charge.dispute.closed", "charge.dispute.funds_withdrawn",
                 "charge.dispute.funds_reinstated"]


async def _endpoint(client: stripe.StripeClient, receiver: Receiver, events: list[str] | None = None) -> str:
    created = await client.v1.webhook_endpoints.create_async(
        params={"url": receiver.url, "enabled_events": events or AFTER_PAYMENT})
    return created.secret


def _verified(receiver: Receiver, secret: str) -> list[stripe.Event]:
    return [stripe.Webhook.construct_event(r.body, r.headers["Stripe-Signature"], secret) for r in receiver.received]


async def _paid(standin: StripeStandin, client: stripe.StripeClient, method: str = "card",
                amount: int = 1999) -> str:
    link = await client.v1.payment_links.create_async(params=link_params(amount=amount))
    result = await standin.pay(link.id, method=method)  # type: ignore[arg-type]
    await result.delivered
    return str(result.payment_intent["id"])


async def _error(call: object) -> stripe.StripeError:
    with pytest.raises(stripe.StripeError) as info:
        await call  # type: ignore[misc]
    return info.value


async def test_a_card_payment_has_a_charge_the_intent_expands_to(
    standin: StripeStandin, client: stripe.StripeClient
) -> None:
    pi_id = await _paid(standin, client)
    plain = await client.v1.payment_intents.retrieve_async(pi_id)
    assert isinstance(plain.latest_charge, str) and plain.latest_charge.startswith("ch_")
    pi = await client.v1.payment_intents.retrieve_async(pi_id, params={"expand": ["latest_charge"]})
    charge = pi.latest_charge
    assert isinstance(charge, stripe.Charge) and charge.id == plain.latest_charge
    assert (charge.amount, charge.amount_captured, charge.amount_refunded) == (1999, 1999, 0)
    assert (charge.status, charge.paid, charge.captured, charge.refunded, charge.disputed) == (
        "succeeded", True, True, False, False)
    assert charge.currency == "usd" and charge.payment_intent == pi_id and charge.livemode is False
    assert charge.metadata.to_dict() == pi.metadata.to_dict() == {"invoice_id": "inv-1", "invoice_uid": "uid-inv-1"}
    assert charge.receipt_email == "customer@example.com" == charge.billing_details.email
    assert charge.receipt_url.startswith("https://pay.stripe.com/receipts/payment/")
    card = charge.payment_method_details.card
    assert charge.payment_method_details.type == "card"
    assert (card.brand, card.last4, card.funding, card.country) == ("visa", "4242", "credit", "US")
    assert 1 <= card.exp_month <= 12 and card.exp_year > 2000
    assert "refunds" not in charge  # not included since 2022-11-15 unless expanded
    fetched = await client.v1.charges.retrieve_async(charge.id)
    assert fetched.to_dict() == charge.to_dict()


async def test_a_bank_debit_charge_names_the_bank(standin: StripeStandin, client: stripe.StripeClient) -> None:
    pi_id = await _paid(standin, client, method="delayed")
    pi = await client.v1.payment_intents.retrieve_async(pi_id, params={"expand": ["latest_charge"]})
    details = pi.latest_charge.payment_method_details
    assert details.type == "us_bank_account"
    assert details.us_bank_account.bank_name and details.us_bank_account.last4 == "6789"


async def test_full_refund_over_http_emits_signed_events(
    standin: StripeStandin, client: stripe.StripeClient, receiver: Receiver
) -> None:
    secret = await _endpoint(client, receiver)
    pi_id = await _paid(standin, client)
    refund = await client.v1.refunds.create_async(
        params={"payment_intent": pi_id, "reason": "requested_by_customer", "metadata": {"ticket": "T-1"}})
    assert refund.id.startswith("re_") and refund.object == "refund"
    assert (refund.amount, refund.currency, refund.status, refund.reason) == (
        1999, "usd", "succeeded", "requested_by_customer")
    assert refund.payment_intent == pi_id and refund.metadata.to_dict() == {"ticket": "T-1"}
    await standin.wait_deliveries_idle()
    events = _verified(receiver, secret)
    assert [e.type for e in events] == ["refund.created", "charge.refunded"]
    assert events[0].data.object.id == refund.id
    charge = events[1].data.object
    assert (charge.id, charge.amount_refunded, charge.refunded) == (refund.charge, 1999, True)
    assert events[1].data.previous_attributes.to_dict() == {"amount_refunded": 0, "refunded": False}
    assert all(e.request.id and e.request.id.startswith("req_") for e in events)
    listed = await client.v1.events.list_async(params={"type": "refund.created"})
    assert [e.id for e in listed.data] == [events[0].id]
    again = await _error(client.v1.refunds.create_async(params={"charge": refund.charge}))
    assert again.http_status == 400 and again.code == "charge_already_refunded"
    assert again.user_message == f"Charge {refund.charge} has already been refunded."


async def test_partial_refunds_then_too_large(standin: StripeStandin, client: stripe.StripeClient) -> None:
    pi_id = await _paid(standin, client, amount=5000)
    first = await client.v1.refunds.create_async(params={"payment_intent": pi_id, "amount": 2000})
    assert first.amount == 2000
    charge = await client.v1.charges.retrieve_async(first.charge)
    assert (charge.amount_refunded, charge.refunded) == (2000, False)
    too_large = await _error(client.v1.refunds.create_async(params={"payment_intent": pi_id, "amount": 3001}))
    assert too_large.http_status == 400 and too_large.code == "amount_too_large"
    assert too_large.param == "amount"  # type: ignore[attr-defined]
    assert too_large.user_message == "Refund amount ($30.01) is greater than unrefunded amount on charge ($30.00)"
    rest = await client.v1.refunds.create_async(params={"charge": first.charge})
    assert rest.amount == 3000
    charge = await client.v1.charges.retrieve_async(first.charge, params={"expand": ["refunds"]})
    assert (charge.amount_refunded, charge.refunded) == (5000, True)
    assert [r.id for r in charge.refunds.data] == [rest.id, first.id]


async def test_refund_params_are_checked_like_stripe(standin: StripeStandin, client: stripe.StripeClient) -> None:
    pi_id = await _paid(standin, client)
    assert (await _error(client.v1.refunds.create_async(params={"amount": 5}))).code == "parameter_missing"
    bad_reason = await _error(client.v1.refunds.create_async(params={"payment_intent": pi_id, "reason": "nope"}))
    assert bad_reason.param == "reason"  # type: ignore[attr-defined]
    zero = await _error(client.v1.refunds.create_async(params={"payment_intent": pi_id, "amount": 0}))
    assert zero.param == "amount"  # type: ignore[attr-defined]
    missing = await _error(client.v1.refunds.create_async(params={"payment_intent": "pi_nope"}))
    assert missing.http_status == 404 and missing.code == "resource_missing"
    assert (await _error(client.v1.refunds.retrieve_async("re_nope"))).http_status == 404


async def test_a_retried_refund_request_is_not_a_second_refund(
    standin: StripeStandin, client: stripe.StripeClient, receiver: Receiver
) -> None:
    await _endpoint(client, receiver, ["refund.created"])
    pi_id = await _paid(standin, client, amount=5000)
    params = {"payment_intent": pi_id, "amount": 1000}
    first = await client.v1.refunds.create_async(params=params, options={"idempotency_key": "refund-1"})
    second = await client.v1.refunds.create_async(params=params, options={"idempotency_key": "refund-1"})
    assert second.id == first.id
    assert second.last_response.headers.get("Idempotent-Replayed") == "true"
    listed = await client.v1.refunds.list_async(params={"payment_intent": pi_id})
    assert [r.id for r in listed.data] == [first.id]
    await standin.wait_deliveries_idle()
    assert len(receiver.received) == 1
    assert receiver.received[0].event["request"]["idempotency_key"] == "refund-1"


async def test_refunds_list_filters_and_pages(standin: StripeStandin, client: stripe.StripeClient) -> None:
    one, two = await _paid(standin, client, amount=3000), await _paid(standin, client)
    made = [await client.v1.refunds.create_async(params={"payment_intent": one, "amount": 1000}) for _ in range(3)]
    other = await client.v1.refunds.create_async(params={"payment_intent": two})
    everything = await client.v1.refunds.list_async()
    assert [r.id for r in everything.data] == [other.id, *[r.id for r in reversed(made)]]
    page = await client.v1.refunds.list_async(params={"payment_intent": one, "limit": 2})
    assert [r.id for r in page.data] == [made[2].id, made[1].id] and page.has_more
    rest = await client.v1.refunds.list_async(params={"payment_intent": one, "starting_after": made[1].id})
    assert [r.id for r in rest.data] == [made[0].id] and not rest.has_more
    by_charge = await client.v1.refunds.list_async(params={"charge": other.charge})
    assert [r.id for r in by_charge.data] == [other.id]


async def test_a_bank_refund_is_pending_until_settled(
    standin: StripeStandin, client: stripe.StripeClient, receiver: Receiver
) -> None:
    secret = await _endpoint(client, receiver)
    pi_id = await _paid(standin, client, method="delayed")
    result = await standin.refund(pi_id, amount=999)
    await result.delivered
    assert result.event_types == ["refund.created", "charge.refunded"]
    refund = result.refund
    assert refund is not None and refund["status"] == "pending"
    assert result.charge["amount_refunded"] == 999  # a pending refund counts
    settled = await standin.settle_refund(refund["id"])
    await settled.delivered
    assert settled.event_types == ["refund.updated"]
    fetched = await client.v1.refunds.retrieve_async(refund["id"])
    assert fetched.status == "succeeded"
    events = _verified(receiver, secret)
    assert [e.type for e in events] == ["refund.created", "charge.refunded", "refund.updated"]
    assert events[2].data.previous_attributes["status"] == "pending"


async def test_a_failed_refund_no_longer_counts(
    standin: StripeStandin, client: stripe.StripeClient, receiver: Receiver
) -> None:
    secret = await _endpoint(client, receiver)
    pi_id = await _paid(standin, client)
    created = await standin.refund(pi_id, reason="duplicate")
    await created.delivered
    refund = created.refund
    assert refund is not None and refund["status"] == "succeeded"
    failed = await standin.fail_refund(refund["id"])
    await failed.delivered
    assert failed.event_types == ["refund.failed", "refund.updated"]
    fetched = await client.v1.refunds.retrieve_async(refund["id"])
    assert (fetched.status, fetched.failure_reason) == ("failed", "expired_or_canceled_card")
    charge = await client.v1.charges.retrieve_async(fetched.charge)
    assert (charge.amount_refunded, charge.refunded) == (0, False)
    await standin.wait_deliveries_idle()
    assert [e.type for e in _verified(receiver, secret)] == [
        "refund.created", "charge.refunded", "refund.failed", "refund.updated"]
    with pytest.raises(ValueError):
        await standin.fail_refund(refund["id"])


async def test_only_a_refund_awaiting_the_customer_can_be_canceled(
    standin: StripeStandin, client: stripe.StripeClient, receiver: Receiver
) -> None:
    await _endpoint(client, receiver, ["refund.updated"])
    pi_id = await _paid(standin, client, amount=4000)
    done = await client.v1.refunds.create_async(params={"payment_intent": pi_id, "amount": 1000})
    refused = await _error(client.v1.refunds.cancel_async(done.id))
    assert refused.http_status == 400 and "requires_action" in str(refused.user_message)
    waiting = (await standin.refund(pi_id, amount=500, requires_action=True)).refund
    assert waiting is not None and waiting["status"] == "requires_action"
    assert waiting["next_action"]["type"] == "display_details"
    canceled = await client.v1.refunds.cancel_async(waiting["id"])
    assert (canceled.status, canceled.failure_reason) == ("canceled", "merchant_request")
    assert (await client.v1.charges.retrieve_async(canceled.charge)).amount_refunded == 1000
    await standin.wait_deliveries_idle()
    assert [r.event["data"]["object"]["status"] for r in receiver.received] == ["canceled"]


async def test_a_dispute_lost_by_accepting_it(
    standin: StripeStandin, client: stripe.StripeClient, receiver: Receiver
) -> None:
    secret = await _endpoint(client, receiver)
    pi_id = await _paid(standin, client)
    opened = await standin.open_dispute(pi_id, reason="product_not_received")
    await opened.delivered
    assert opened.event_types == ["charge.dispute.created", "charge.dispute.funds_withdrawn"]
    dispute = await client.v1.disputes.retrieve_async(opened.dispute["id"])  # type: ignore[index]
    assert dispute.id.startswith("du_") and dispute.status == "needs_response"
    assert (dispute.amount, dispute.currency, dispute.reason, dispute.payment_intent) == (
        1999, "usd", "product_not_received", pi_id)
    assert dispute.evidence_details.due_by == dispute.created + 7 * 24 * 3600
    assert [t.amount for t in dispute.balance_transactions] == [-1999]
    charge = await client.v1.charges.retrieve_async(dispute.charge)
    assert charge.disputed is True
    blocked = await _error(client.v1.refunds.create_async(params={"payment_intent": pi_id}))
    assert blocked.code == "charge_disputed"
    closed = await client.v1.disputes.close_async(dispute.id)
    assert closed.status == "lost"
    await standin.wait_deliveries_idle()
    events = {e.type: e for e in _verified(receiver, secret)}
    assert sorted(events) == ["charge.dispute.closed", "charge.dispute.created", "charge.dispute.funds_withdrawn"]
    assert events["charge.dispute.closed"].data.previous_attributes["status"] == "needs_response"
    assert (await _error(client.v1.disputes.close_async(dispute.id))).http_status == 400


async def test_a_dispute_won_with_evidence(
    standin: StripeStandin, client: stripe.StripeClient, receiver: Receiver
) -> None:
    secret = await _endpoint(client, receiver)
    pi_id = await _paid(standin, client)
    dispute_id = (await standin.open_dispute(pi_id)).dispute["id"]  # type: ignore[index]
    staged = await client.v1.disputes.update_async(
        dispute_id, params={"evidence": {"product_description": "A widget"}, "submit": False})
    assert staged.status == "needs_response" and staged.evidence.product_description == "A widget"
    bad = await _error(client.v1.disputes.update_async(dispute_id, params={"evidence": {"bogus": "x"}}))
    assert bad.code == "parameter_unknown"
    submitted = await client.v1.disputes.update_async(
        dispute_id, params={"evidence": {"uncategorized_text": "Delivered"}})  # submit defaults to true
    assert submitted.status == "under_review" and submitted.evidence_details.submission_count == 1
    late = await _error(client.v1.disputes.update_async(dispute_id, params={"evidence": {"customer_name": "x"}}))
    assert late.http_status == 400
    won = await standin.close_dispute(dispute_id, won=True)
    await won.delivered
    assert won.event_types == ["charge.dispute.closed", "charge.dispute.funds_reinstated"]
    assert won.dispute is not None and won.dispute["status"] == "won"
    assert [t["amount"] for t in won.dispute["balance_transactions"]] == [-1999, 1999]
    await standin.wait_deliveries_idle()
    assert sorted(e.type for e in _verified(receiver, secret)) == [  # separate calls: deliveries may interleave
        "charge.dispute.closed", "charge.dispute.created", "charge.dispute.funds_reinstated",
        "charge.dispute.funds_withdrawn", "charge.dispute.updated", "charge.dispute.updated"]


async def test_dispute_helpers_submit_and_lose(standin: StripeStandin, client: stripe.StripeClient) -> None:
    pi_id = await _paid(standin, client, amount=3000)
    await standin.refund(pi_id, amount=1000)
    opened = await standin.open_dispute(pi_id, reason="fraudulent")
    assert opened.dispute is not None and opened.dispute["amount"] == 2000  # the unrefunded rest
    submitted = await standin.submit_dispute_evidence(opened.dispute["id"])
    assert submitted.event_types == ["charge.dispute.updated"] and submitted.dispute["status"] == "under_review"  # type: ignore[index]
    lost = await standin.close_dispute(opened.dispute["id"], won=False)
    assert lost.event_types == ["charge.dispute.closed"] and lost.dispute["status"] == "lost"  # type: ignore[index]
    with pytest.raises(ValueError):
        await standin.close_dispute(opened.dispute["id"], won=True)
    with pytest.raises(ValueError):
        await standin.open_dispute(pi_id)  # one dispute per charge


async def test_events_go_only_to_endpoints_that_enabled_them_and_are_rendered_per_version(
    standin: StripeStandin, client: stripe.StripeClient, receiver: Receiver
) -> None:
    await _endpoint(client, receiver, ["refund.created"])
    legacy = await client.v1.webhook_endpoints.create_async(
        params={"url": receiver.url, "enabled_events": ["charge.refunded"], "api_version": "2020-08-27"})
    pi_id = await _paid(standin, client)
    result = await standin.refund(pi_id, amount=500, duplicate=3, reorder=True)
    await result.delivered
    by_type: dict[str, list[dict[str, Any]]] = {}
    for r in receiver.received:
        by_type.setdefault(r.event["type"], []).append(r.event)
    assert sorted(by_type) == ["charge.refunded", "refund.created"]
    assert len(by_type["refund.created"]) == 3 and len({e["id"] for e in by_type["refund.created"]}) == 1
    old = by_type["charge.refunded"][0]
    assert old["api_version"] == "2020-08-27" and legacy.id in result.endpoint_ids
    assert [r["id"] for r in old["data"]["object"]["refunds"]["data"]] == [result.refund["id"]]  # type: ignore[index]
    assert len(receiver.received) == 6  # each event 3 times
    await standin.open_dispute(pi_id)  # nobody subscribed: stored, not sent
    await standin.wait_deliveries_idle()
    assert len(receiver.received) == 6
    listed = await client.v1.events.list_async(params={"type": "charge.dispute.created"})
    assert len(listed.data) == 1
