"""Every response the Stripe stand-in gives and every event it sends, validated against Stripe's description.

The description is the vendored subset in this directory (README.md says its source and version); the checks
are in ``stripe_schema``: the fields Stripe always sends must be there, and nothing Stripe doesn't have may be.
Calls go through the official SDK, as fluxrate's do; the raw JSON is what gets validated.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest
import stripe
from jsonschema import Draft202012Validator

from fluxrate.models import DEFAULT_ENABLED_EVENTS, AfterCompletion, InvoiceSpec
from fluxrate.operator.integrations import build_webhook_endpoint_params
from fluxrate.operator.payment_links import build_payment_link_params, payment_link_idempotency_key
from fluxrate.stripe_api import build_stripe_client, close_stripe_client
from fluxrate_sandbox.stripe_objects import EVENT_TYPES
from fluxrate_sandbox.stripe_standin import StripeStandin
from tests.manifests import example
from tests.sandbox.stripe_fixtures import Receiver, account, client, link_params, receiver, standin
from tests.stripe_openapi import stripe_schema

__all__ = ["account", "client", "receiver", "standin"]

REPO = Path(__file__).resolve().parents[2]


class Checked:
    """Validates raw responses and remembers which operations were validated with a 2xx."""

    def __init__(self, standin: StripeStandin) -> None:
        self.standin = standin
        self.ok: set[tuple[str, str]] = set()
        self.problems: list[str] = []

    def response(self, method: str, path: str, result: Any) -> dict[str, Any]:
        raw = result.last_response
        body = json.loads(raw.body)
        self._check(method, path, raw.code, body)
        if 200 <= raw.code < 300:
            self.ok.add((method.upper(), path))
        return body

    def error(self, method: str, path: str, exc: stripe.StripeError) -> dict[str, Any]:
        assert exc.http_status is not None and exc.http_status >= 400
        body = exc.json_body
        assert isinstance(body, dict), exc
        self._check(method, path, exc.http_status, body)
        return body

    def _check(self, method: str, path: str, status: int, body: Any) -> None:
        for problem in stripe_schema.response_problems(method, path, status, body):
            self.problems.append(f"{method.upper()} {path} {status}: {problem}")


def _invoice_spec() -> InvoiceSpec:
    return InvoiceSpec.model_validate(example("Invoice", "USD")["spec"])


def _stand_in_routes(standin: StripeStandin) -> set[tuple[str, str]]:
    assert standin._runner is not None
    routes = set()
    for route in standin._runner.app.router.routes():
        if route.method != "HEAD":
            routes.add((route.method, stripe_schema.spec_path(route.resource.canonical)))  # type: ignore[union-attr]
    return routes


def test_vendored_description_is_valid_and_for_the_pinned_sdk() -> None:
    facts = stripe_schema.description()["x-fluxrate"]
    # A new SDK pins a new API version: re-run scripts/vendor_stripe_openapi.py (README.md here).
    assert facts["sdk"]["api_version"] == stripe.api_version
    assert facts["sdk"]["stripe_python"] == stripe.VERSION
    Draft202012Validator.check_schema({"$defs": stripe_schema._defs()})
    assert {"payment_link", "checkout.session", "payment_intent", "webhook_endpoint", "event", "invoice",
            "invoice_payment", "account", "error"} <= set(stripe_schema.description()["components"]["schemas"])
    assert "insufficient_funds" in stripe_schema.error_codes()
    assert "payment_method_insufficient_funds" not in stripe_schema.error_codes()


def test_the_checker_rejects_missing_and_unknown_fields() -> None:
    """The validation is strict both ways (guards the converter itself)."""
    endpoint = {"id": "we_1", "object": "webhook_endpoint", "api_version": None, "application": None, "created": 1,
                "description": None, "enabled_events": ["*"], "livemode": False, "metadata": {},
                "status": "enabled", "url": "https://example.com/hook"}
    assert stripe_schema.object_problems(endpoint, "webhook_endpoint") == []
    assert any("'created' is a required" in p for p in stripe_schema.object_problems(
        {k: v for k, v in endpoint.items() if k != "created"}, "webhook_endpoint"))
    assert any("'bogus' was unexpected" in p for p in stripe_schema.object_problems(
        {**endpoint, "bogus": 1}, "webhook_endpoint"))
    assert any("None is not of type 'integer'" in p or "is not valid" in p
               for p in stripe_schema.object_problems({**endpoint, "created": None}, "webhook_endpoint"))
    error = {"error": {"type": "card_error", "code": "payment_method_insufficient_funds", "message": "x"}}
    assert stripe_schema.response_problems("get", "/v1/account", 402, error) == [
        "error/code: 'payment_method_insufficient_funds' is not in Stripe's documented error codes"]


async def test_every_api_response_matches_the_description(
    standin: StripeStandin, client: stripe.StripeClient, receiver: Receiver
) -> None:
    check = Checked(standin)
    check.response("get", "/v1/account", await client.v1.accounts.retrieve_current_async())

    # webhook endpoints: what the operator sends, then the rest of CRUD
    params = build_webhook_endpoint_params(receiver.url, list(DEFAULT_ENABLED_EVENTS), "billing", "acme", "uid-1")
    managed = await client.v1.webhook_endpoints.create_async(params=params, options={"idempotency_key": "we-1"})
    check.response("post", "/v1/webhook_endpoints", managed)
    pinned = await client.v1.webhook_endpoints.create_async(
        params={"url": receiver.url, "enabled_events": ["*"], "api_version": stripe.api_version})
    check.response("post", "/v1/webhook_endpoints", pinned)
    check.response("get", "/v1/webhook_endpoints/{webhook_endpoint}",
                   await client.v1.webhook_endpoints.retrieve_async(managed.id))
    check.response("post", "/v1/webhook_endpoints/{webhook_endpoint}", await client.v1.webhook_endpoints.update_async(
        managed.id, params={"url": receiver.url, "enabled_events": list(DEFAULT_ENABLED_EVENTS), "disabled": False}))
    check.response("get", "/v1/webhook_endpoints", await client.v1.webhook_endpoints.list_async(params={"limit": 100}))

    # payment links: the operator's params (hosted confirmation and redirect), then the test helper's
    spec = _invoice_spec()
    links = []
    for index, after in enumerate([AfterCompletion(message="Thanks!"), AfterCompletion(),
                                   AfterCompletion(type="redirect", redirect_url="https://example.com/thanks")]):
        uid = f"uid-{index}"
        link = await client.v1.payment_links.create_async(
            params=build_payment_link_params("billing", f"inv-{index}", uid, spec, after),
            options={"idempotency_key": payment_link_idempotency_key(uid)})
        check.response("post", "/v1/payment_links", link)
        links.append(link)
    replay = await client.v1.payment_links.create_async(
        params=build_payment_link_params("billing", "inv-0", "uid-0", spec, AfterCompletion(message="Thanks!")),
        options={"idempotency_key": payment_link_idempotency_key("uid-0")})
    assert replay.last_response.headers.get("Idempotent-Replayed") == "true"
    check.response("post", "/v1/payment_links", replay)
    extra = await client.v1.payment_links.create_async(params=link_params(currency="jpy", amount=500, quantity=3))
    check.response("post", "/v1/payment_links", extra)
    check.response("get", "/v1/payment_links/{payment_link}", await client.v1.payment_links.retrieve_async(links[0].id))
    check.response("get", "/v1/payment_links/{payment_link}/line_items",
                   await client.v1.payment_links.line_items.list_async(links[0].id))
    check.response("post", "/v1/payment_links/{payment_link}",
                   await client.v1.payment_links.update_async(extra.id, params={"active": False}))
    check.response("post", "/v1/payment_links/{payment_link}", await client.v1.payment_links.update_async(
        links[1].id, params={"metadata": {"note": "x"}}))
    check.response("get", "/v1/payment_links", await client.v1.payment_links.list_async(params={"limit": 100}))
    check.response("get", "/v1/payment_links", await client.v1.payment_links.list_async(
        params={"limit": 2, "active": True}))

    # payments of every kind, then what reconciliation and the receiver read back
    results = [await standin.pay(links[0].id), await standin.pay(links[1].id, outcome="failed"),
               await standin.pay(links[1].id, method="delayed"),
               await standin.pay(links[2].id, method="delayed", outcome="failed")]
    for result in results:
        await result.delivered
    for link in links:
        sessions = await client.v1.checkout.sessions.list_async(
            params={"payment_link": link.id, "status": "complete", "limit": 10})
        check.response("get", "/v1/checkout/sessions", sessions)
    for result in results:
        if result.session is not None:
            check.response("get", "/v1/checkout/sessions/{session}",
                           await client.v1.checkout.sessions.retrieve_async(result.session["id"]))
        check.response("get", "/v1/payment_intents/{intent}",
                       await client.v1.payment_intents.retrieve_async(result.payment_intent["id"]))
    check.response("get", "/v1/checkout/sessions", await client.v1.checkout.sessions.list_async())
    await _after_payment_responses(check, standin, client, [r.payment_intent["id"] for r in results
                                                            if r.payment_intent["status"] == "succeeded"])
    events = await client.v1.events.list_async(params={"limit": 100})
    check.response("get", "/v1/events", events)
    assert events.data
    for event in events.data:
        check.response("get", "/v1/events/{id}", await client.v1.events.retrieve_async(event.id))

    deleted = await client.v1.webhook_endpoints.delete_async(pinned.id)
    check.response("delete", "/v1/webhook_endpoints/{webhook_endpoint}", deleted)

    assert check.problems == []
    assert _stand_in_routes(standin) <= check.ok, "a stand-in route whose 2xx answer no test validated"


async def _after_payment_responses(check: Checked, standin: StripeStandin, client: stripe.StripeClient,
                                   paid: list[str]) -> None:
    """Charges (the PaymentIntent expanded to its charge too), refunds and disputes of succeeded payments."""
    card, bank = paid
    for pi_id in paid:
        expanded = await client.v1.payment_intents.retrieve_async(pi_id, params={"expand": ["latest_charge"]})
        body = json.loads(expanded.last_response.body)
        charge = body["latest_charge"]
        # the description has expansions pruned to their id form: the expanded charge is checked as a charge
        check._check("get", "/v1/payment_intents/{intent}", 200, {**body, "latest_charge": charge["id"]})
        check.problems += [f"expanded latest_charge: {p}" for p in stripe_schema.object_problems(charge, "charge")]
        check.response("get", "/v1/charges/{charge}", await client.v1.charges.retrieve_async(charge["id"]))
    refund = await client.v1.refunds.create_async(params={"payment_intent": card, "amount": 100,
                                                          "metadata": {"ticket": "1"}})
    check.response("post", "/v1/refunds", refund)
    check.response("post", "/v1/refunds", await client.v1.refunds.create_async(
        params={"charge": refund.charge, "reason": "duplicate"}, options={"idempotency_key": "refund-rest"}))
    check.response("post", "/v1/refunds", await client.v1.refunds.create_async(
        params={"payment_intent": bank, "amount": 50}))
    waiting = await standin.refund(bank, amount=25, requires_action=True)
    check.response("get", "/v1/refunds/{refund}", await client.v1.refunds.retrieve_async(waiting.refund["id"]))  # type: ignore[index]
    check.response("post", "/v1/refunds/{refund}/cancel",
                   await client.v1.refunds.cancel_async(waiting.refund["id"]))  # type: ignore[index]
    check.response("get", "/v1/refunds", await client.v1.refunds.list_async(params={"limit": 100}))
    check.response("get", "/v1/refunds", await client.v1.refunds.list_async(params={"payment_intent": bank}))
    check.response("get", "/v1/charges/{charge}", await client.v1.charges.retrieve_async(
        refund.charge, params={"expand": ["refunds"]}))
    dispute = (await standin.open_dispute(bank, reason="general")).dispute
    assert dispute is not None
    check.response("get", "/v1/disputes/{dispute}", await client.v1.disputes.retrieve_async(dispute["id"]))
    check.response("post", "/v1/disputes/{dispute}", await client.v1.disputes.update_async(
        dispute["id"], params={"evidence": {"product_description": "A widget"}, "submit": False}))
    check.response("post", "/v1/disputes/{dispute}/close", await client.v1.disputes.close_async(dispute["id"]))


# What an invoice_creation link adds to each pay() flow: a declined card completes no session, so no invoice.
INVOICE_EVENTS = {
    ("card", "succeeded"): {"invoice.payment_succeeded", "invoice_payment.paid"},
    ("card", "failed"): set(),
    ("delayed", "succeeded"): {"invoice.payment_succeeded", "invoice_payment.paid"},
    ("delayed", "failed"): {"invoice.payment_failed"},
}


@pytest.mark.parametrize("invoicing", [False, True], ids=["plain", "invoice_creation"])
@pytest.mark.parametrize(("method", "outcome"), [
    ("card", "succeeded"), ("card", "failed"), ("delayed", "succeeded"), ("delayed", "failed"),
])
async def test_every_event_of_a_payment_matches_the_description(
    standin: StripeStandin, client: stripe.StripeClient, receiver: Receiver, method: str, outcome: str,
    invoicing: bool,
) -> None:
    """Each pay() flow, to an endpoint subscribed to everything: every event sent, as sent.

    With ``invoicing`` the link creates an invoice (``invoice_creation``) and the endpoint is pinned to the SDK's
    version and subscribed to every type the stand-in can send, invoice_payment.paid included (``*`` leaves the
    endpoint at the account default, which the plain case covers).
    """
    if invoicing:
        await client.v1.webhook_endpoints.create_async(params={
            "url": receiver.url, "enabled_events": sorted(EVENT_TYPES), "api_version": stripe.api_version})
    else:
        await client.v1.webhook_endpoints.create_async(params={"url": receiver.url, "enabled_events": ["*"]})
    spec = _invoice_spec()
    params = build_payment_link_params("billing", "inv-1", "uid-1", spec, AfterCompletion())
    invoice_metadata = {"invoice_uid": "uid-1", "namespace": "billing"}
    if invoicing:
        params = {**params, "invoice_creation": {"enabled": True, "invoice_data": {"metadata": invoice_metadata}}}
    link = await client.v1.payment_links.create_async(params=params)
    await client.v1.payment_links.update_async(link.id, params={"metadata": {"seen": "1"}})
    result = await standin.pay(link.id, method=method, outcome=outcome)  # type: ignore[arg-type]
    await result.delivered
    await standin.wait_deliveries_idle()
    sent = [r.event for r in receiver.received]
    assert {e["id"] for e in result.events} <= {e["id"] for e in sent}
    problems = [f"{e['type']} {p}" for e in sent for p in stripe_schema.event_problems(e)]
    assert problems == []
    assert {e["api_version"] for e in sent} == {stripe.api_version}
    invoice_types = {e["type"] for e in sent if e["type"].startswith("invoice")}
    assert invoice_types == (INVOICE_EVENTS[(method, outcome)] if invoicing else set())
    for event in sent:
        obj = event["data"]["object"]
        if obj["object"] == "invoice":
            assert obj["id"] == result.session["invoice"]  # type: ignore[index]
            assert obj["metadata"] == invoice_metadata
            assert obj["customer"] == result.session["customer"]  # type: ignore[index]
        elif obj["object"] == "invoice_payment":
            assert obj["invoice"] == result.session["invoice"]  # type: ignore[index]
            assert obj["payment"]["payment_intent"] == result.payment_intent["id"]


async def test_error_bodies_match_the_description(standin: StripeStandin, client: stripe.StripeClient) -> None:
    check = Checked(standin)
    seen: set[tuple[int, str | None]] = set()

    async def expect(method: str, path: str, call: Any) -> None:
        with pytest.raises(stripe.StripeError) as info:
            await call
        body = check.error(method, path, info.value)
        seen.add((info.value.http_status or 0, body["error"].get("code")))

    base = link_params()
    await expect("post", "/v1/payment_links", client.v1.payment_links.create_async(params={"metadata": {"a": "b"}}))
    await expect("post", "/v1/payment_links", client.v1.payment_links.create_async(params={**base, "bogus": "1"}))
    await expect("post", "/v1/payment_links", client.v1.payment_links.create_async(
        params=link_params(amount=10)))
    await expect("post", "/v1/payment_links", client.v1.payment_links.create_async(
        params={**base, "restrictions": {"completed_sessions": {"limit": "x"}}}))
    await expect("post", "/v1/payment_links", client.v1.payment_links.create_async(
        params={**base, "after_completion": "redirect"}))
    await expect("post", "/v1/payment_links", client.v1.payment_links.create_async(
        params={**base, "after_completion": {"type": "redirect", "redirect": {"url": "nope"}}}))
    await expect("post", "/v1/payment_links", client.v1.payment_links.create_async(
        params={**base, "line_items": [{"price_data": {"currency": "usd", "product_data": {"name": ["a"]},
                                                       "unit_amount": 100}, "quantity": 1}]}))
    await client.v1.payment_links.create_async(params=base, options={"idempotency_key": "k"})
    await expect("post", "/v1/payment_links", client.v1.payment_links.create_async(
        params=link_params(amount=999), options={"idempotency_key": "k"}))
    await expect("get", "/v1/payment_links/{payment_link}", client.v1.payment_links.retrieve_async("plink_nope"))
    await expect("get", "/v1/webhook_endpoints/{webhook_endpoint}",
                 client.v1.webhook_endpoints.retrieve_async("we_nope"))
    await expect("post", "/v1/webhook_endpoints", client.v1.webhook_endpoints.create_async(
        params={"url": "https://example.com/hook", "enabled_events": ["no.such.event"]}))
    await expect("get", "/v1/events/{id}", client.v1.events.retrieve_async("evt_nope"))
    await expect("get", "/v1/payment_links", client.v1.payment_links.list_async(params={"limit": 1000}))
    standin.set_faults(rate_limit_rate=1.0)
    await expect("get", "/v1/account", client.v1.accounts.retrieve_current_async())
    standin.set_faults(rate_limit_rate=0.0, error_rate=1.0)
    await expect("get", "/v1/account", client.v1.accounts.retrieve_current_async())
    standin.reset_faults()
    stranger = build_stripe_client("sk_test_notARegisteredKey0000", api_base=standin.url, max_network_retries=0)
    try:
        await expect("get", "/v1/account", stranger.v1.accounts.retrieve_current_async())
    finally:
        await close_stripe_client(stranger)
    assert check.problems == []
    assert {status for status, _ in seen} >= {400, 401, 404, 429, 500}


async def test_every_event_after_a_payment_matches_the_description(
    standin: StripeStandin, client: stripe.StripeClient, receiver: Receiver
) -> None:
    """Refunds (succeeded, pending then settled, failed, canceled) and disputes (won, lost, an inquiry closed),
    to an endpoint subscribed to every type the stand-in can send, pinned to the SDK's version."""
    await client.v1.webhook_endpoints.create_async(params={
        "url": receiver.url, "enabled_events": sorted(EVENT_TYPES), "api_version": stripe.api_version})
    link = await client.v1.payment_links.create_async(params=link_params(amount=5000))
    intents = []
    for method in ("card", "card", "delayed", "card"):
        result = await standin.pay(link.id, method=method)  # type: ignore[arg-type]
        await result.delivered
        intents.append(result.payment_intent["id"])
    handles = []
    refund = await client.v1.refunds.create_async(params={"payment_intent": intents[0], "amount": 1000})
    handles.append(await standin.fail_refund(refund.id, failure_reason="lost_or_stolen_card"))
    waiting = await standin.refund(intents[0], amount=500, requires_action=True)
    await client.v1.refunds.cancel_async(waiting.refund["id"])  # type: ignore[index]
    pending = await standin.refund(intents[2], reason="fraudulent")
    handles += [pending, await standin.settle_refund(pending.refund["id"])]  # type: ignore[index]
    won = await standin.open_dispute(intents[1], reason="fraudulent")
    handles += [won, await standin.submit_dispute_evidence(won.dispute["id"])]  # type: ignore[index]
    handles.append(await standin.close_dispute(won.dispute["id"], won=True))  # type: ignore[index]
    lost = await standin.open_dispute(intents[3], reason="duplicate", amount=1200)
    await client.v1.disputes.close_async(lost.dispute["id"])  # type: ignore[index]
    inquiry = await standin.open_dispute(intents[0], reason="general", warning=True)
    handles += [inquiry, await standin.close_dispute(inquiry.dispute["id"], won=False)]  # type: ignore[index]
    for handle in handles:
        await handle.delivered
    await standin.wait_deliveries_idle()
    sent = [r.event for r in receiver.received]
    problems = [f"{e['type']} {p}" for e in sent for p in stripe_schema.event_problems(e)]
    assert problems == []
    after = {e["type"] for e in sent if e["type"].startswith(("refund.", "charge."))}
    assert after == {"refund.created", "refund.updated", "refund.failed", "charge.refunded",
                     "charge.dispute.created", "charge.dispute.updated", "charge.dispute.closed",
                     "charge.dispute.funds_withdrawn", "charge.dispute.funds_reinstated"}


async def test_refund_and_dispute_errors_match_the_description(
    standin: StripeStandin, client: stripe.StripeClient
) -> None:
    check = Checked(standin)
    codes: list[str | None] = []

    async def expect(method: str, path: str, call: Any) -> None:
        with pytest.raises(stripe.StripeError) as info:
            await call
        codes.append(check.error(method, path, info.value)["error"].get("code"))

    link = await client.v1.payment_links.create_async(params=link_params())
    paid = await standin.pay(link.id)
    pi_id = paid.payment_intent["id"]
    await expect("post", "/v1/refunds", client.v1.refunds.create_async(params={"payment_intent": pi_id,
                                                                               "amount": 999999}))
    refund = await client.v1.refunds.create_async(params={"payment_intent": pi_id})
    await expect("post", "/v1/refunds", client.v1.refunds.create_async(params={"payment_intent": pi_id}))
    await expect("post", "/v1/refunds/{refund}/cancel", client.v1.refunds.cancel_async(refund.id))
    await expect("get", "/v1/refunds/{refund}", client.v1.refunds.retrieve_async("re_nope"))
    await expect("get", "/v1/charges/{charge}", client.v1.charges.retrieve_async("ch_nope"))
    other = await standin.pay(link.id)
    dispute = (await standin.open_dispute(other.payment_intent["id"])).dispute
    assert dispute is not None
    await expect("post", "/v1/refunds", client.v1.refunds.create_async(
        params={"payment_intent": other.payment_intent["id"]}))
    await client.v1.disputes.close_async(dispute["id"])
    await expect("post", "/v1/disputes/{dispute}/close", client.v1.disputes.close_async(dispute["id"]))
    await expect("get", "/v1/disputes/{dispute}", client.v1.disputes.retrieve_async("du_nope"))
    assert check.problems == []
    assert {"amount_too_large", "charge_already_refunded", "charge_disputed", "resource_missing"} <= set(codes)


def _error_codes_in(path: Path) -> set[str]:
    """Every string given as ``code=`` to a call, or as a ``"code"`` value in a dict, in a source file."""
    codes: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            codes |= {kw.value.value for kw in node.keywords if kw.arg == "code"
                      and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str)}
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "code":
                    codes |= _strings(value)
    return codes


def _strings(node: ast.expr) -> set[str]:
    """The strings an expression can be: a constant, or either branch of ``a if cond else b``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.IfExp):
        return _strings(node.body) | _strings(node.orelse)
    return set()


def test_every_error_code_the_stand_in_can_send_is_documented() -> None:
    """Also the codes of paths no test takes: read from the stand-in's source."""
    sources = sorted((REPO / "sandbox" / "fluxrate_sandbox").glob("stripe_*.py"))
    codes = {code: path.name for path in sources for code in _error_codes_in(path)}
    assert {"card_declined", "resource_missing", "parameter_missing"} <= set(codes)
    assert {code: where for code, where in codes.items() if code not in stripe_schema.error_codes()} == {}
