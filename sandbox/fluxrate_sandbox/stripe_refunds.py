"""Charges, refunds and disputes of the Stripe stand-in: what happens to a payment after it succeeded.

A successful ``pay()`` stores a Charge (``payment_intent.latest_charge``). Refunds are created over HTTP
(``POST /v1/refunds``) or with the test helper ``StripeStandin.refund``; disputes only by the test helpers (a
cardholder's bank opens them), and the merchant answers them over HTTP (``POST /v1/disputes/{id}``, ``/close``).
Each change emits the events Stripe sends, stored for ``GET /v1/events`` and delivered signed to the endpoints that
enabled their type. Shapes follow Stripe's OpenAPI description (held to it by tests/stripe_openapi).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from fluxrate_sandbox.stripe_objects import (
    ZERO_DECIMAL,
    StripeError,
    apply_metadata,
    check_unknown,
    get_bool,
    get_dict,
    get_int,
    get_list,
    get_str,
    new_id,
    not_found,
)

if TYPE_CHECKING:
    from fluxrate_sandbox.stripe_standin import StripeStandin

REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer")
REFUND_FAILURE_REASONS = ("charge_for_pending_refund_disputed", "declined", "expired_or_canceled_card",
                          "insufficient_funds", "lost_or_stolen_card", "merchant_request", "unknown")
# What ``charge.amount_refunded`` counts: money on its way back or returned (failed and canceled refunds are not).
COUNTED_REFUND_STATUSES = frozenset({"pending", "requires_action", "succeeded"})
DISPUTE_REASONS = ("bank_cannot_process", "check_returned", "credit_not_processed", "customer_initiated",
                   "debit_not_authorized", "duplicate", "fraudulent", "general", "incorrect_account_details",
                   "insufficient_funds", "noncompliant", "product_not_received", "product_unacceptable",
                   "subscription_canceled", "unrecognized")
# Visa reason codes of the card networks' chargebacks, by Stripe's dispute reason (the rest: none given).
VISA_REASON_CODES = {"fraudulent": "10.4", "product_not_received": "13.1", "duplicate": "12.6.1",
                     "credit_not_processed": "13.6", "product_unacceptable": "13.3", "subscription_canceled": "13.2"}
OPEN_DISPUTE_STATUSES = frozenset({"needs_response", "warning_needs_response"})
CLOSED_DISPUTE_STATUSES = frozenset({"won", "lost", "warning_closed", "prevented"})
DISPUTE_FEE = 1500  # minor units of the charge's currency (Stripe's US card dispute fee is $15.00)
EVIDENCE_WINDOW_S = 7 * 24 * 3600
EVIDENCE_TEXT_FIELDS = frozenset({
    "access_activity_log", "billing_address", "cancellation_policy_disclosure", "cancellation_rebuttal",
    "customer_email_address", "customer_name", "customer_purchase_ip", "duplicate_charge_explanation",
    "duplicate_charge_id", "product_description", "refund_policy_disclosure", "refund_refusal_explanation",
    "service_date", "shipping_address", "shipping_carrier", "shipping_date", "shipping_tracking_number",
    "uncategorized_text",
})
EVIDENCE_FILE_FIELDS = frozenset({
    "cancellation_policy", "customer_communication", "customer_signature", "duplicate_charge_documentation",
    "receipt", "refund_policy", "service_documentation", "shipping_documentation", "uncategorized_file",
})
REFUND_CREATE_PARAMS = {"amount", "charge", "payment_intent", "reason", "metadata", "expand", "instructions_email"}
REFUND_LIST_PARAMS = {"charge", "payment_intent", "limit", "starting_after", "ending_before", "expand"}
_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥", "cad": "$", "aud": "$"}


@dataclass
class Record:
    """An object of one account and mode."""

    account_id: str
    livemode: bool
    obj: dict[str, Any]


@dataclass
class MoneyBackResult:
    """What a refund/dispute test helper did; ``await result.delivered`` for its webhook deliveries."""

    events: list[dict[str, Any]]
    endpoint_ids: list[str]
    delivered: asyncio.Task[None]
    charge: dict[str, Any]
    refund: dict[str, Any] | None = None
    dispute: dict[str, Any] | None = None

    @property
    def event_types(self) -> list[str]:
        return [e["type"] for e in self.events]


@dataclass
class _Origin:
    """Who asked: an API request (its id and idempotency key go into the events) or a test helper (None)."""

    request_id: str | None = None
    idempotency_key: str | None = None


def format_amount(amount: int, currency: str) -> str:
    """An amount as Stripe's refund error messages print it: ``$20.00``, ``¥500``, ``12.34 SEK``."""
    major = str(amount) if currency in ZERO_DECIMAL else f"{amount / 100:.2f}"
    symbol = _SYMBOLS.get(currency)
    return f"{symbol}{major}" if symbol else f"{major} {currency.upper()}"


def charge_object(pi: Mapping[str, Any], *, method: str, email: str | None, descriptor: str) -> dict[str, Any]:
    """The succeeded Charge of a PaymentIntent (card, or a delayed us_bank_account debit)."""
    created = int(pi.get("created") or time.time())
    year = time.gmtime(created).tm_year
    if method == "card":
        details: dict[str, Any] = {"card": {
            "amount_authorized": pi["amount"], "authorization_code": f"{created % 1000000:06d}", "brand": "visa",
            "checks": {"address_line1_check": None, "address_postal_code_check": None, "cvc_check": "pass"},
            "country": "US", "exp_month": 12, "exp_year": year + 3,
            "extended_authorization": {"status": "disabled"}, "fingerprint": new_id("x", 16)[2:],
            "funding": "credit", "incremental_authorization": {"status": "unavailable"}, "installments": None,
            "last4": "4242", "mandate": None, "multicapture": {"status": "unavailable"}, "network": "visa",
            "network_token": {"used": False}, "network_transaction_id": str(created)[-9:] + "0123456",
            "overcapture": {"maximum_amount_capturable": pi["amount"], "status": "unavailable"},
            "regulated_status": "unregulated", "three_d_secure": None, "transaction_link_id": None,
            "wallet": None,
        }, "type": "card"}
        outcome_extra = {"risk_level": "normal", "risk_score": 32}
    else:
        details = {"type": "us_bank_account", "us_bank_account": {
            "account_holder_type": "individual", "account_type": "checking", "bank_name": "STRIPE TEST BANK",
            "fingerprint": new_id("x", 16)[2:], "last4": "6789", "payment_reference": None,
            "routing_number": "110000000",
        }}
        outcome_extra = {"risk_level": "not_assessed"}
    return {
        "id": new_id("ch", 24),
        "object": "charge",
        "amount": pi["amount"],
        "amount_captured": pi["amount"],
        "amount_refunded": 0,
        "application": None,
        "application_fee": None,
        "application_fee_amount": None,
        "balance_transaction": new_id("txn", 24),
        "billing_details": {
            "address": {"city": None, "country": "US", "line1": None, "line2": None, "postal_code": None,
                        "state": None},
            "email": email, "name": None, "phone": None, "tax_id": None,
        },
        "calculated_statement_descriptor": descriptor,
        "captured": True,
        "created": created,
        "currency": pi["currency"],
        "customer": pi.get("customer"),
        "description": pi.get("description"),
        "disputed": False,
        "failure_balance_transaction": None,
        "failure_code": None,
        "failure_message": None,
        "fraud_details": {},
        "livemode": bool(pi.get("livemode")),
        "metadata": dict(pi.get("metadata") or {}),  # Stripe copies the PaymentIntent's metadata to its charges
        "on_behalf_of": None,
        "outcome": {"advice_code": None, "network_advice_code": None, "network_decline_code": None,
                    "network_status": "approved_by_network", "reason": None, "seller_message": "Payment complete.",
                    "type": "authorized", **outcome_extra},
        "paid": True,
        "payment_intent": pi["id"],
        "payment_method": pi.get("payment_method"),
        "payment_method_details": details,
        "receipt_email": email,
        "receipt_number": None,
        "receipt_url": f"https://pay.stripe.com/receipts/payment/{new_id('x', 64)[2:]}",
        "refunded": False,
        "review": None,
        "shipping": None,
        "source_transfer": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": "succeeded",
        "transfer_data": None,
        "transfer_group": None,
    }


def balance_transaction(amount: int, fee: int, currency: str, source: str, *, description: str,
                        category: str, created: int) -> dict[str, Any]:
    """A dispute's balance transaction (funds withdrawn: negative amount, plus the dispute fee; reinstated)."""
    return {
        "id": new_id("txn", 24),
        "object": "balance_transaction",
        "amount": amount,
        "available_on": created + 2 * 24 * 3600,
        "balance_type": "payments",
        "created": created,
        "currency": currency,
        "description": description,
        "exchange_rate": None,
        "fee": fee,
        "fee_details": [{"amount": fee, "application": None, "currency": currency, "description": "Dispute fee",
                         "type": "stripe_fee"}] if fee else [],
        "net": amount - fee,
        "reporting_category": category,
        "source": source,
        "status": "pending",
        "type": "adjustment",
    }


def _evidence() -> dict[str, Any]:
    return {**dict.fromkeys(sorted(EVIDENCE_TEXT_FIELDS | EVIDENCE_FILE_FIELDS)), "enhanced_evidence": {}}


def _changed(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """``previous_attributes``: the top-level fields that changed, with their old values (None: it was absent)."""
    keys = [*before, *(k for k in after if k not in before)]
    return {k: before.get(k) for k in keys if after.get(k) != before.get(k)}


class MoneyBack:
    """The stand-in's charges, refunds and disputes (``StripeStandin.money``)."""

    def __init__(self, standin: StripeStandin) -> None:
        self.standin = standin
        self.charges: dict[str, Record] = {}
        self.refunds: dict[str, Record] = {}
        self.disputes: dict[str, Record] = {}

    # ------------------------------------------------------------------ charges

    def add_charge(self, pi: dict[str, Any], *, method: str, account_id: str, livemode: bool) -> dict[str, Any]:
        account = self.standin.accounts[account_id]
        charge = charge_object(pi, method="card" if method == "card" else "us_bank_account",
                               email=pi.get("receipt_email"), descriptor=account.display_name[:22].upper())
        self.charges[charge["id"]] = Record(account_id, livemode, charge)
        self.standin.versions.intent_charges[pi["id"]] = charge
        self.standin.versions.charge_refunds[charge["id"]] = []
        return charge

    def charge_of(self, payment_intent_id: str) -> Record:
        stored = self.standin.payment_intents.get(payment_intent_id)
        if stored is None:
            raise KeyError(payment_intent_id)
        charge_id = stored.obj.get("latest_charge")
        if not charge_id or charge_id not in self.charges:
            raise ValueError(f"payment intent {payment_intent_id} has no successful charge")
        return self.charges[charge_id]

    def expanded_intent(self, pi: dict[str, Any], expand: list[Any]) -> dict[str, Any]:
        """A PaymentIntent with ``expand[]=latest_charge`` honoured."""
        if "latest_charge" not in expand or pi.get("latest_charge") not in self.charges:
            return pi
        return {**pi, "latest_charge": self.charges[pi["latest_charge"]].obj}

    def _refunds_of(self, charge_id: str) -> list[dict[str, Any]]:
        return [r.obj for r in self.refunds.values() if r.obj["charge"] == charge_id]

    def _recount(self, charge: dict[str, Any]) -> dict[str, Any]:
        """Update ``amount_refunded``/``refunded`` from the charge's refunds; returns the previous values."""
        before = {"amount_refunded": charge["amount_refunded"], "refunded": charge["refunded"]}
        refunded = sum(r["amount"] for r in self._refunds_of(charge["id"]) if r["status"] in COUNTED_REFUND_STATUSES)
        charge.update(amount_refunded=refunded, refunded=refunded >= charge["amount"])
        return {k: v for k, v in before.items() if charge[k] != v}

    # ------------------------------------------------------------------ events

    def _events(self, record: Record, origin: _Origin,
                specs: list[tuple[str, dict[str, Any], dict[str, Any] | None]]) -> list[dict[str, Any]]:
        return [self.standin.make_event(kind, obj, account_id=record.account_id, livemode=record.livemode,
                                        request_id=origin.request_id, idempotency_key=origin.idempotency_key,
                                        previous_attributes=previous)
                for kind, obj, previous in specs]

    def _send(self, events: list[dict[str, Any]], duplicate: int = 1, reorder: bool = False
              ) -> tuple[list[str], asyncio.Task[None]]:
        targets: dict[str, list[dict[str, Any]]] = {}
        for event in events:
            stored = self.standin.events[event["id"]]
            for endpoint in self.standin._endpoints_for(stored.account_id, stored.livemode, event["type"]):
                targets.setdefault(endpoint.id, []).append(event)
        task = self.standin.dispatcher.spawn(self.standin._deliver_batches([events], targets, duplicate, reorder))
        return list(targets), task

    def _result(self, events: list[dict[str, Any]], charge: dict[str, Any], duplicate: int, reorder: bool,
                **objs: dict[str, Any]) -> MoneyBackResult:
        endpoint_ids, task = self._send(events, duplicate, reorder)
        return MoneyBackResult(events, endpoint_ids, task, charge, **objs)

    # ------------------------------------------------------------------ refunds

    def create_refund(self, charge_record: Record, amount: int | None, reason: str | None,
                      metadata: dict[str, str], origin: _Origin, *, status: str | None = None
                      ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Refund (part of) a charge like ``POST /v1/refunds``: the Refund and its events (not yet sent)."""
        charge = charge_record.obj
        remaining = charge["amount"] - charge["amount_refunded"]
        if charge["refunded"] or remaining <= 0:
            raise StripeError(400, f"Charge {charge['id']} has already been refunded.",
                              code="charge_already_refunded")
        dispute = next((d.obj for d in self.disputes.values() if d.obj["charge"] == charge["id"]), None)
        if dispute is not None and not dispute["is_charge_refundable"]:
            raise StripeError(400, f"Charge {charge['id']} has been charged back; cannot issue a refund.",
                              code="charge_disputed")
        amount = remaining if amount is None else amount
        if amount > remaining:
            currency = charge["currency"]
            raise StripeError(
                400,
                f"Refund amount ({format_amount(amount, currency)}) is greater than unrefunded amount on charge "
                f"({format_amount(remaining, currency)})",
                code="amount_too_large", param="amount",
            )
        card = charge["payment_method_details"]["type"] == "card"
        status = status or ("succeeded" if card else "pending")
        now = int(time.time())
        refund: dict[str, Any] = {
            "id": new_id("re", 24), "object": "refund", "amount": amount,
            "balance_transaction": new_id("txn", 24), "charge": charge["id"], "created": now,
            "currency": charge["currency"], "customer": charge.get("customer"), "customer_account": None,
            "metadata": metadata, "payment_intent": charge["payment_intent"],
            "payment_method": charge["payment_method"], "reason": reason, "receipt_number": None,
            "source_transfer_reversal": None, "status": status, "transfer_reversal": None,
        }
        if card:
            refund["destination_details"] = {"card": {
                "reference": str(now)[-8:] + "9876543210", "reference_status": "pending",
                "reference_type": "acquirer_reference_number", "type": "refund"}, "type": "card"}
        if status == "pending":
            refund["pending_reason"] = "processing"
        elif status == "requires_action":
            email = charge.get("receipt_email") or "customer@example.com"
            refund["next_action"] = {"display_details": {
                "email_sent": {"email_sent_at": now, "email_sent_to": email},
                "expires_at": now + 45 * 24 * 3600}, "type": "display_details"}
        self.refunds[refund["id"]] = Record(charge_record.account_id, charge_record.livemode, refund)
        self.standin.versions.charge_refunds.setdefault(charge["id"], []).insert(0, refund)
        previous = self._recount(charge)
        events = self._events(charge_record, origin, [("refund.created", refund, None),
                                                      ("charge.refunded", charge, previous)])
        return refund, events

    def _refund_record(self, refund_id: str) -> Record:
        if refund_id not in self.refunds:
            raise KeyError(refund_id)
        return self.refunds[refund_id]

    def _change_refund(self, refund_id: str, status: str, failure_reason: str | None, origin: _Origin
                       ) -> tuple[Record, list[dict[str, Any]]]:
        record = self._refund_record(refund_id)
        refund = record.obj
        before = json.loads(json.dumps(refund))
        refund["status"] = status
        refund.pop("pending_reason", None)
        refund.pop("next_action", None)
        if failure_reason is not None:
            refund["failure_reason"] = failure_reason
            refund["failure_balance_transaction"] = new_id("txn", 24)
        card = (refund.get("destination_details") or {}).get("card")
        if card is not None and status == "succeeded":
            card["reference_status"] = "available"
        charge_record = self.charges[refund["charge"]]
        self._recount(charge_record.obj)
        updated = ("refund.updated", refund, _changed(before, refund))
        specs = [("refund.failed", refund, None), updated] if status == "failed" else [updated]
        return charge_record, self._events(charge_record, origin, specs)

    def refund(self, payment_intent_id: str, amount: int | None, reason: str | None, pending: bool | None,
               duplicate: int, reorder: bool, *, requires_action: bool, metadata: dict[str, str] | None
               ) -> MoneyBackResult:
        record = self.charge_of(payment_intent_id)
        status = "requires_action" if requires_action else None if pending is None else (
            "pending" if pending else "succeeded")
        refund, events = self.create_refund(record, amount, reason, dict(metadata or {}), _Origin(), status=status)
        return self._result(events, record.obj, duplicate, reorder, refund=refund)

    def settle(self, refund_id: str, duplicate: int, reorder: bool) -> MoneyBackResult:
        refund = self._refund_record(refund_id).obj
        if refund["status"] not in ("pending", "requires_action"):
            raise ValueError(f"refund {refund_id} is {refund['status']}, not pending")
        charge_record, events = self._change_refund(refund_id, "succeeded", None, _Origin())
        return self._result(events, charge_record.obj, duplicate, reorder, refund=refund)

    def fail(self, refund_id: str, failure_reason: str, duplicate: int, reorder: bool) -> MoneyBackResult:
        refund = self._refund_record(refund_id).obj
        if failure_reason not in REFUND_FAILURE_REASONS:
            raise ValueError(f"not one of Stripe's refund failure reasons: {failure_reason}")
        if refund["status"] in ("failed", "canceled"):
            raise ValueError(f"refund {refund_id} is already {refund['status']}")
        charge_record, events = self._change_refund(refund_id, "failed", failure_reason, _Origin())
        return self._result(events, charge_record.obj, duplicate, reorder, refund=refund)

    # ------------------------------------------------------------------ disputes

    def open(self, payment_intent_id: str, reason: str, amount: int | None, duplicate: int, reorder: bool,
             warning: bool = False) -> MoneyBackResult:
        record = self.charge_of(payment_intent_id)
        charge = record.obj
        if reason not in DISPUTE_REASONS:
            raise ValueError(f"not one of Stripe's dispute reasons: {reason}")
        if charge["disputed"]:
            raise ValueError(f"charge {charge['id']} is already disputed")
        disputable = charge["amount"] - charge["amount_refunded"]
        amount = disputable if amount is None else amount
        if not 0 < amount <= disputable:
            raise ValueError(f"dispute amount {amount} outside 1..{disputable}")
        now = int(time.time())
        dispute_id = new_id("du", 24)
        card = charge["payment_method_details"]["type"] == "card"
        withdrawn = [] if warning else [balance_transaction(
            -amount, DISPUTE_FEE, charge["currency"], dispute_id, description=f"Chargeback withdrawal for "
            f"{charge['id']}", category="dispute", created=now)]
        dispute: dict[str, Any] = {
            "id": dispute_id, "object": "dispute", "amount": amount, "balance_transactions": withdrawn,
            "charge": charge["id"], "created": now, "currency": charge["currency"],
            "enhanced_eligibility_types": [], "evidence": _evidence(),
            "evidence_details": {"due_by": now + EVIDENCE_WINDOW_S, "enhanced_eligibility": {},
                                 "has_evidence": False, "past_due": False, "submission_count": 0},
            "is_charge_refundable": warning, "livemode": record.livemode, "metadata": {},
            "payment_intent": charge["payment_intent"], "reason": reason,
            "status": "warning_needs_response" if warning else "needs_response",
        }
        if card:
            dispute["payment_method_details"] = {"card": {
                "brand": "visa", "case_type": "inquiry" if warning else "chargeback", "network": "visa",
                "network_reason_code": VISA_REASON_CODES.get(reason)}, "type": "card"}
        self.disputes[dispute_id] = Record(record.account_id, record.livemode, dispute)
        charge["disputed"] = True
        specs: list[tuple[str, dict[str, Any], dict[str, Any] | None]] = [("charge.dispute.created", dispute, None)]
        if not warning:
            specs.append(("charge.dispute.funds_withdrawn", dispute, None))
        return self._result(self._events(record, _Origin(), specs), charge, duplicate, reorder, dispute=dispute)

    def _dispute_record(self, dispute_id: str) -> Record:
        if dispute_id not in self.disputes:
            raise KeyError(dispute_id)
        return self.disputes[dispute_id]

    def update_dispute(self, record: Record, evidence: Mapping[str, str], metadata: Any, submit: bool,
                       origin: _Origin) -> list[dict[str, Any]]:
        """Stage (or submit, Stripe's default) evidence: ``charge.dispute.updated`` when anything changed."""
        dispute = record.obj
        before = json.loads(json.dumps(dispute))
        dispute["evidence"].update(evidence)
        dispute["metadata"] = apply_metadata(dispute["metadata"], metadata)
        details = dispute["evidence_details"]
        details["has_evidence"] = details["has_evidence"] or any(v for v in evidence.values())
        if submit:
            details["submission_count"] += 1
            dispute["status"] = {"needs_response": "under_review",
                                 "warning_needs_response": "warning_under_review"}[dispute["status"]]
        previous = _changed(before, dispute)
        if not previous:
            return []
        return self._events(self.charges[dispute["charge"]], origin,
                            [("charge.dispute.updated", dispute, previous)])

    def close(self, record: Record, outcome: str, origin: _Origin) -> list[dict[str, Any]]:
        """Close a dispute as ``won``, ``lost`` or ``warning_closed``: ``charge.dispute.closed`` (and the funds
        reinstated when the merchant won a chargeback)."""
        dispute = record.obj
        before = json.loads(json.dumps(dispute))
        dispute["status"] = outcome
        dispute["is_charge_refundable"] = outcome == "won"
        reinstated = outcome == "won" and bool(dispute["balance_transactions"])
        if reinstated:
            dispute["balance_transactions"].append(balance_transaction(
                dispute["amount"], 0, dispute["currency"], dispute["id"],
                description=f"Chargeback reversal for {dispute['charge']}", category="dispute_reversal",
                created=int(time.time())))
        specs: list[tuple[str, dict[str, Any], dict[str, Any] | None]] = [
            ("charge.dispute.closed", dispute, _changed(before, dispute))]
        if reinstated:
            specs.append(("charge.dispute.funds_reinstated", dispute, None))
        return self._events(self.charges[dispute["charge"]], origin, specs)

    def submit_evidence(self, dispute_id: str, evidence: dict[str, str] | None, duplicate: int, reorder: bool
                        ) -> MoneyBackResult:
        record = self._dispute_record(dispute_id)
        self._check_open(record.obj)
        unknown = set(evidence or {}) - EVIDENCE_TEXT_FIELDS - EVIDENCE_FILE_FIELDS
        if unknown:
            raise ValueError(f"not dispute evidence fields: {sorted(unknown)}")
        events = self.update_dispute(record, evidence or {"uncategorized_text": "Delivered as agreed."}, None,
                                     True, _Origin())
        return self._result(events, self.charges[record.obj["charge"]].obj, duplicate, reorder,
                            dispute=record.obj)

    def decide(self, dispute_id: str, won: bool, duplicate: int, reorder: bool) -> MoneyBackResult:
        record = self._dispute_record(dispute_id)
        status = record.obj["status"]
        if status in CLOSED_DISPUTE_STATUSES:
            raise ValueError(f"dispute {dispute_id} is already {status}")
        outcome = "warning_closed" if status.startswith("warning_") else "won" if won else "lost"
        events = self.close(record, outcome, _Origin())
        return self._result(events, self.charges[record.obj["charge"]].obj, duplicate, reorder,
                            dispute=record.obj)

    # ------------------------------------------------------------------ HTTP

    def routes(self, router: web.UrlDispatcher, wrap: Callable[[Any], Any]) -> None:
        router.add_get("/v1/charges/{id}", wrap(self._get_charge))
        router.add_post("/v1/refunds", wrap(self._create_refund))
        router.add_get("/v1/refunds", wrap(self._list_refunds))
        router.add_get("/v1/refunds/{id}", wrap(self._get_refund))
        router.add_post("/v1/refunds/{id}/cancel", wrap(self._cancel_refund))
        router.add_get("/v1/disputes/{id}", wrap(self._get_dispute))
        router.add_post("/v1/disputes/{id}", wrap(self._update_dispute))
        router.add_post("/v1/disputes/{id}/close", wrap(self._close_dispute))

    @staticmethod
    def _origin(ctx: Any) -> _Origin:
        return _Origin(ctx.request_id, ctx.idempotency_key)

    def _owned(self, table: dict[str, Record], ctx: Any, kind: str, object_id: str | None = None,
               param: str = "id") -> Record:
        object_id = ctx.request.match_info["id"] if object_id is None else object_id
        record = table.get(object_id)
        if record is None or record.account_id != ctx.account.id or record.livemode != ctx.livemode:
            raise not_found(kind, object_id, param)
        return record

    def _emit(self, events: list[dict[str, Any]]) -> None:
        if events:
            self._send(events)

    async def _get_charge(self, ctx: Any) -> tuple[int, dict[str, Any]]:
        charge = self._owned(self.charges, ctx, "charge").obj
        if "refunds" in (get_list(ctx.params, "expand", "expand") or []):
            charge = {**charge, "refunds": {"object": "list", "data": self._refunds_of(charge["id"])[::-1],
                                            "has_more": False, "url": f"/v1/charges/{charge['id']}/refunds"}}
        return 200, charge

    async def _create_refund(self, ctx: Any) -> tuple[int, dict[str, Any]]:
        params = ctx.params
        check_unknown(params, REFUND_CREATE_PARAMS)
        charge_id = get_str(params, "charge", "charge")
        intent_id = get_str(params, "payment_intent", "payment_intent")
        if not charge_id and not intent_id:
            raise StripeError(400, "One of `charge` or `payment_intent` is required.", code="parameter_missing")
        if intent_id:
            pi = self.standin._owned(self.standin.payment_intents, ctx, intent_id, "payment_intent").obj
            if charge_id and pi.get("latest_charge") != charge_id:
                raise StripeError(400, f"Charge {charge_id} does not belong to PaymentIntent {intent_id}.",
                                  param="charge")
            if pi.get("latest_charge") not in self.charges:
                raise StripeError(400, f"This PaymentIntent ({intent_id}) does not have a successful charge to "
                                  "refund.", param="payment_intent")
            charge_id = pi["latest_charge"]
        assert charge_id is not None
        record = self._owned(self.charges, ctx, "charge", charge_id, "charge")
        amount = get_int(params, "amount", "amount", minimum=1)
        reason = get_str(params, "reason", "reason")
        if reason is not None and reason not in REFUND_REASONS:
            raise StripeError(400, "Invalid reason: must be one of duplicate, fraudulent, or requested_by_customer",
                              param="reason")
        metadata = apply_metadata({}, params.get("metadata"))
        refund, events = self.create_refund(record, amount, reason, metadata, self._origin(ctx))
        self._emit(events)
        return 200, refund

    async def _list_refunds(self, ctx: Any) -> tuple[int, dict[str, Any]]:
        check_unknown(ctx.params, REFUND_LIST_PARAMS)
        objs = [r.obj for r in reversed(self.refunds.values())
                if r.account_id == ctx.account.id and r.livemode == ctx.livemode]
        for key in ("payment_intent", "charge"):
            value = get_str(ctx.params, key, key)
            if value is not None:
                objs = [o for o in objs if o.get(key) == value]
        return 200, self.standin._paginate(ctx, objs, "/v1/refunds")

    async def _get_refund(self, ctx: Any) -> tuple[int, dict[str, Any]]:
        return 200, self._owned(self.refunds, ctx, "refund").obj

    async def _cancel_refund(self, ctx: Any) -> tuple[int, dict[str, Any]]:
        record = self._owned(self.refunds, ctx, "refund")
        refund = record.obj
        if refund["status"] != "requires_action":
            raise StripeError(
                400,
                f"Refund {refund['id']} cannot be canceled because it has a status of {refund['status']}. Only a "
                "refund with a status of requires_action can be canceled.",
            )
        _, events = self._change_refund(refund["id"], "canceled", "merchant_request", self._origin(ctx))
        self._emit(events)
        return 200, refund

    async def _get_dispute(self, ctx: Any) -> tuple[int, dict[str, Any]]:
        return 200, self._owned(self.disputes, ctx, "dispute").obj

    async def _update_dispute(self, ctx: Any) -> tuple[int, dict[str, Any]]:
        record = self._owned(self.disputes, ctx, "dispute")
        params = ctx.params
        check_unknown(params, {"evidence", "metadata", "submit", "expand"})
        evidence = get_dict(params, "evidence", "evidence") or {}
        check_unknown(evidence, set(EVIDENCE_TEXT_FIELDS | EVIDENCE_FILE_FIELDS), "evidence")
        for key, value in evidence.items():
            if not isinstance(value, str):
                raise StripeError(400, f"Invalid string: {value!r}", param=f"evidence[{key}]")
        submit = get_bool(params, "submit", "submit")
        self._check_open(record.obj)
        events = self.update_dispute(record, {k: v or None for k, v in evidence.items()}, params.get("metadata"),
                                     True if submit is None else submit, self._origin(ctx))
        self._emit(events)
        return 200, record.obj

    async def _close_dispute(self, ctx: Any) -> tuple[int, dict[str, Any]]:
        record = self._owned(self.disputes, ctx, "dispute")
        self._check_open(record.obj)
        outcome = "warning_closed" if record.obj["status"].startswith("warning_") else "lost"
        self._emit(self.close(record, outcome, self._origin(ctx)))
        return 200, record.obj

    @staticmethod
    def _check_open(dispute: Mapping[str, Any]) -> None:
        status = dispute["status"]
        if status in CLOSED_DISPUTE_STATUSES:
            raise StripeError(400, f"This dispute is already closed (status: {status}); it cannot be changed.")
        if status not in OPEN_DISPUTE_STATUSES:
            raise StripeError(400, f"The evidence for this dispute has already been submitted (status: {status}); "
                              "it can no longer be changed.")
