"""A Stripe API stand-in: an HTTP server speaking Stripe's REST shapes for the parts fluxrate uses.

It is reached only through the official ``stripe`` SDK with its ``api`` base address pointed at
``StripeStandin.url`` (see ``fluxrate.stripe_api.build_stripe_client``). Money is integer minor units.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from fluxrate_sandbox.stripe_objects import (
    DEFAULT_API_VERSION,
    EVENT_TYPES,
    StripeError,
    account_object,
    apply_metadata,
    check_unknown,
    checkout_session_defaults,
    customer_details,
    decode_form,
    fill,
    get_bool,
    get_int,
    get_list,
    get_str,
    key_livemode,
    mask_key,
    new_id,
    not_found,
    payment_intent_defaults,
    payment_link_defaults,
    valid_key_format,
)
from fluxrate_sandbox.stripe_payment_links import (
    CREATE_PARAMS,
    UPDATE_PARAMS,
    apply_simple_settings,
    parse_after_completion,
    parse_line_items,
    parse_payment_intent_data,
    parse_restrictions,
)
from fluxrate_sandbox.stripe_refunds import MoneyBack, MoneyBackResult
from fluxrate_sandbox.stripe_versions import (
    VersionRenderer,
    add_invoice_events,
    apply_invoice_creation,
    prepare_invoice,
)
from fluxrate_sandbox.stripe_webhooks import (
    DeliveryAttempt,
    WebhookDispatcher,
    WebhookEndpoint,
    sign_payload,
)

__all__ = [
    "DEMO_TEST_KEY",
    "DeliveryAttempt",
    "DeliveryHandle",
    "Faults",
    "MoneyBackResult",
    "PaymentLinkUnavailable",
    "PaymentResult",
    "StripeStandin",
    "WebhookEndpoint",
    "run_standin",
    "sign_payload",
]

DEMO_TEST_KEY = "sk_test_fluxrateDemo0000000000000000000000000000"
EVENT_RETENTION_S = 30 * 24 * 3600  # Stripe lists and retrieves events of the last 30 days only
MAX_EVENT_TYPES = 20  # GET /v1/events: ``types`` takes up to 20 event types
RANGE_KEYS = {"gt", "gte", "lt", "lte"}
MAX_WEBHOOK_ENDPOINTS = 16
IDEMPOTENCY_KEY_TTL_S = 24 * 3600.0  # Stripe prunes saved idempotent results after 24 hours
RATE_LIMIT_MESSAGE = (
    "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits."
)
API_ERROR_MESSAGE = (
    "Sorry, something went wrong. We've already been notified of the problem, but if you need any help, "
    "you can reach us at support.stripe.com/contact."
)

PayMethod = Literal["card", "delayed"]
PayOutcome = Literal["succeeded", "failed"]


class PaymentLinkUnavailable(Exception):
    """The customer cannot pay through this link (inactive, or its completed-session limit is reached)."""


@dataclass
class Faults:
    """Runtime fault knobs. Rates are probabilities in [0, 1]; latency in seconds."""

    error_rate: float = 0.0  # 500 api_error
    rate_limit_rate: float = 0.0  # injected 429s (on top of the token bucket)
    latency_s: float = 0.0  # fixed latency added to every API request
    latency_max_s: float = 0.0  # plus uniform random latency in [0, latency_max_s]
    outage: Literal["503", "refuse"] | None = None


@dataclass
class Account:
    id: str
    email: str
    display_name: str
    created: int
    country: str = "US"
    default_currency: str = "usd"
    api_version: str = DEFAULT_API_VERSION

    def to_api(self) -> dict[str, Any]:
        return account_object(self.id, email=self.email, display_name=self.display_name, created=self.created,
                              country=self.country, default_currency=self.default_currency)


@dataclass
class ApiKey:
    key: str
    account_id: str
    livemode: bool
    revoked: bool = False


@dataclass
class Stored:
    account_id: str
    livemode: bool
    obj: dict[str, Any]
    line_items: list[dict[str, Any]] = field(default_factory=list)
    # events only: endpoint id -> whether a delivery to it succeeded (a 2xx); False while pending, retrying, or
    # after its retries gave up or the endpoint was disabled or deleted (``delivery_success`` of GET /v1/events)
    deliveries: dict[str, bool] = field(default_factory=dict)


class _TokenBucket:
    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = rate
        self.updated = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass
class _Idem:
    method: str
    path: str
    fingerprint: str
    status: int
    body: bytes
    request_id: str
    saved_at: float = 0.0  # on the stand-in's clock (``StripeStandin.now``)


@dataclass
class _Ctx:
    request: web.Request
    account: Account
    livemode: bool
    params: dict[str, Any]
    request_id: str
    idempotency_key: str | None


class DeliveryHandle:
    """Awaitable: resolves when every delivery (including retries) of these events has finished."""

    def __init__(self, events: list[dict[str, Any]], task: asyncio.Task[None], endpoint_ids: list[str]):
        self.events = events
        self.endpoint_ids = endpoint_ids
        self.task = task

    @property
    def delivered(self) -> asyncio.Task[None]:
        return self.task

    def __await__(self) -> Generator[Any, None, None]:
        return self.task.__await__()


@dataclass
class PaymentResult:
    payment_link: dict[str, Any]
    session: dict[str, Any] | None
    payment_intent: dict[str, Any]
    events: list[dict[str, Any]]
    endpoint_ids: list[str]
    delivered: asyncio.Task[None]

    @property
    def event_types(self) -> list[str]:
        return [e["type"] for e in self.events]


_CTX = web.RequestKey("stripe_standin_ctx", _Ctx)
Handler = Callable[[_Ctx], Awaitable[tuple[int, dict[str, Any]]]]


class StripeStandin:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        rate_limit_test: float = 25.0,
        rate_limit_live: float = 100.0,
        webhook_time_scale: float = 0.01,
        webhook_max_attempts_test: int = 4,
        webhook_max_attempts_live: int = 16,
        webhook_timeout_s: float = 10.0,
        delayed_payment_settle_s: float = 0.0,
        rate_limit_should_retry: bool | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.rate_limit_test = rate_limit_test
        self.rate_limit_live = rate_limit_live
        self.delayed_payment_settle_s = delayed_payment_settle_s
        self.rate_limit_should_retry = rate_limit_should_retry
        self.faults = Faults()
        self.accounts: dict[str, Account] = {}
        self.keys: dict[str, ApiKey] = {}
        # every API key and webhook signing secret ever issued or registered (rolled, expired and deleted ones
        # included): what tests search logs for, since a leak of a secret that is gone is still a leak
        self.issued_secrets: list[str] = []
        self.webhook_endpoints: dict[str, WebhookEndpoint] = {}
        self.payment_links: dict[str, Stored] = {}
        self.checkout_sessions: dict[str, Stored] = {}
        self.payment_intents: dict[str, Stored] = {}
        self.events: dict[str, Stored] = {}
        self.money = MoneyBack(self)  # charges, refunds and disputes (stripe_refunds.py)
        # counters tests can read
        self.request_counts: Counter[tuple[str, str, int]] = Counter()
        self.rate_limited: int = 0
        self.injected_errors: int = 0
        self.links_created_by_invoice: Counter[str] = Counter()
        self.idempotent_replays: int = 0
        self._buckets: dict[str, _TokenBucket] = {}
        self._idem: dict[tuple[str, bool, str], _Idem] = {}
        self._idem_inflight: set[tuple[str, bool, str]] = set()
        self.clock_offset_s = 0.0  # ``advance_clock``: time passing for what the stand-in ages (idempotency keys)
        self.versions = VersionRenderer()  # events rendered in each endpoint's API version
        self.dispatcher = WebhookDispatcher(
            time_scale=webhook_time_scale,
            max_attempts_test=webhook_max_attempts_test,
            max_attempts_live=webhook_max_attempts_live,
            timeout_s=webhook_timeout_s,
            lookup_endpoint=self.webhook_endpoints.get,
            render=self.versions.render,
            on_result=self._delivery_result,
        )
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware], client_max_size=1024**2)
        self._routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await self._start_site()
        await self.dispatcher.start()

    async def _start_site(self) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await self._site.start()
        if self.port == 0:
            server = self._site._server
            assert server is not None
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        await self.dispatcher.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._site = None

    async def __aenter__(self) -> StripeStandin:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ the stand-in's clock

    def now(self) -> float:
        """Wall time plus whatever tests advanced it by."""
        return time.time() + self.clock_offset_s

    def advance_clock(self, seconds: float) -> None:
        """Let ``seconds`` pass for the stand-in: saved idempotency keys older than 24 hours expire."""
        self.clock_offset_s += seconds

    def _saved_idempotent(self, scope: tuple[str, bool, str]) -> _Idem | None:
        saved = self._idem.get(scope)
        if saved is not None and self.now() - saved.saved_at >= IDEMPOTENCY_KEY_TTL_S:
            del self._idem[scope]  # expired: the key may be used again, for a new request
            return None
        return saved

    # ------------------------------------------------------------------ accounts and keys

    def add_account(
        self,
        key: str | None = None,
        livemode: bool = False,
        *,
        email: str | None = None,
        display_name: str | None = None,
    ) -> tuple[str, str]:
        """Create an account with one secret key; returns ``(account_id, key)``.

        With an explicit ``key`` its prefix decides the mode (``sk_live_``/``rk_live_`` = live).
        """
        account_id = new_id("acct", 16)
        self.accounts[account_id] = Account(
            id=account_id,
            email=email or f"billing+{account_id[5:13].lower()}@example.com",
            display_name=display_name or f"Stand-in {account_id[5:11]}",
            created=int(time.time()),
        )
        return account_id, self.add_key(account_id, key, livemode=livemode)

    def add_key(self, account_id: str, key: str | None = None, *, livemode: bool = False) -> str:
        if account_id not in self.accounts:
            raise KeyError(account_id)
        if key is None:
            key = new_id("sk_live" if livemode else "sk_test", 99)
        elif not valid_key_format(key):
            raise ValueError(f"not a Stripe secret/restricted key: {mask_key(key)}")
        if key in self.keys and self.keys[key].account_id != account_id:
            raise ValueError("key already registered for another account")
        self.keys[key] = ApiKey(key=key, account_id=account_id, livemode=key_livemode(key))
        return self._issued(key)

    def _issued(self, secret: str) -> str:
        if secret not in self.issued_secrets:
            self.issued_secrets.append(secret)
        return secret

    def revoke_key(self, key: str) -> None:
        self.keys[key].revoked = True

    # ------------------------------------------------------------------ faults and counters

    def set_faults(self, **knobs: Any) -> Faults:
        for name, value in knobs.items():
            if not hasattr(self.faults, name):
                raise AttributeError(name)
            setattr(self.faults, name, value)
        return self.faults

    def reset_faults(self) -> None:
        self.faults = Faults()

    async def set_outage(self, mode: Literal["503", "refuse"] | None) -> None:
        """``refuse`` closes the listening socket (new connections are refused, kept-alive ones are cut);
        ``503`` answers every request with a 503 ``api_error``; ``None`` restores service."""
        previous = self.faults.outage
        self.faults.outage = mode
        if mode == "refuse" and previous != "refuse" and self._site is not None:
            await self._site.stop()
            self._site = None
        elif mode != "refuse" and previous == "refuse" and self._site is None and self._runner is not None:
            await self._start_site()

    def count_requests(self, method: str | None = None, path: str | None = None, status: int | None = None) -> int:
        return sum(
            n
            for (m, p, s), n in self.request_counts.items()
            if (method is None or m == method) and (path is None or p == path) and (status is None or s == status)
        )

    @property
    def delivery_log(self) -> list[DeliveryAttempt]:
        return self.dispatcher.log

    def deliveries_for(self, event_id: str) -> list[DeliveryAttempt]:
        return [a for a in self.dispatcher.log if a.event_id == event_id]

    async def wait_deliveries_idle(self, within_s: float | None = 10.0) -> None:
        await self.dispatcher.wait_idle(within_s)

    # ------------------------------------------------------------------ webhook endpoint helpers for tests

    def tamper_endpoint(self, endpoint_id: str, **fields: Any) -> WebhookEndpoint:
        endpoint = self.webhook_endpoints[endpoint_id]
        for name, value in fields.items():
            if not hasattr(endpoint, name):
                raise AttributeError(name)
            if name == "secrets":
                for secret in value:
                    self._issued(secret)
            setattr(endpoint, name, value)
        return endpoint

    def delete_endpoint(self, endpoint_id: str) -> None:
        del self.webhook_endpoints[endpoint_id]

    def roll_endpoint_secret(self, endpoint_id: str, overlap_s: float = 24 * 3600.0) -> str:
        """New signing secret; the old ones keep signing (extra ``v1=`` entries) for ``overlap_s``."""
        endpoint = self.webhook_endpoints[endpoint_id]
        expiry = time.monotonic() + overlap_s
        for secret in endpoint.secrets:
            endpoint.secret_expiry.setdefault(secret, expiry)
        new_secret = self._issued(new_id("whsec", 32))
        endpoint.secrets.append(new_secret)
        return new_secret

    def expire_old_secrets(self, endpoint_id: str) -> None:
        endpoint = self.webhook_endpoints[endpoint_id]
        endpoint.secrets = endpoint.secrets[-1:]
        endpoint.secret_expiry.clear()

    # ------------------------------------------------------------------ events and delivery

    def make_event(
        self,
        type: str,
        obj: dict[str, Any],
        *,
        account_id: str | None = None,
        livemode: bool | None = None,
        request_id: str | None = None,
        idempotency_key: str | None = None,
        previous_attributes: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Build (and store) a Stripe Event around a snapshot of ``obj``."""
        if account_id is None:
            if len(self.accounts) != 1:
                raise ValueError("account_id is required when the stand-in has several accounts")
            account_id = next(iter(self.accounts))
        live = bool(obj.get("livemode", False)) if livemode is None else livemode
        data: dict[str, Any] = {"object": json.loads(json.dumps(obj))}
        if previous_attributes is not None:
            data["previous_attributes"] = previous_attributes
        event = {
            "id": new_id("evt", 24),
            "object": "event",
            "api_version": self.accounts[account_id].api_version,
            "created": int(self.now()),  # the stand-in's clock: ``advance_clock`` ages events too
            "data": data,
            "livemode": live,
            "pending_webhooks": len(self._endpoints_for(account_id, live, type)),
            "request": {"id": request_id, "idempotency_key": idempotency_key},
            "type": type,
        }
        self.events[event["id"]] = Stored(account_id, live, event)
        return event

    def _endpoints_for(self, account_id: str, livemode: bool, event_type: str) -> list[WebhookEndpoint]:
        return [
            e
            for e in self.webhook_endpoints.values()
            if e.account_id == account_id and e.livemode == livemode and e.wants(event_type)
        ]

    def _event_account(self, event: dict[str, Any]) -> str:
        stored = self.events.get(event["id"])
        if stored is not None:
            return stored.account_id
        if len(self.accounts) == 1:
            return next(iter(self.accounts))
        raise ValueError("unknown event: build it with make_event()")

    def deliver(
        self,
        event: dict[str, Any] | Sequence[dict[str, Any]],
        endpoint_id: str | None = None,
        *,
        duplicate: int = 1,
        reorder: bool = False,
    ) -> DeliveryHandle:
        """Send signed event(s): to ``endpoint_id`` regardless of its filter, else to the account's
        enabled endpoints subscribed to each type. Await the handle for completion (retries included)."""
        events = [event] if isinstance(event, dict) else list(event)
        if endpoint_id is not None:
            targets: dict[str, list[dict[str, Any]]] = {endpoint_id: events}
        else:
            targets = {}
            for ev in events:
                for ep in self._endpoints_for(self._event_account(ev), bool(ev.get("livemode")), ev["type"]):
                    targets.setdefault(ep.id, []).append(ev)
        task = self.dispatcher.spawn(self._deliver_batches([events], targets, duplicate, reorder))
        return DeliveryHandle(events, task, list(targets))

    async def _deliver_batches(
        self,
        phases: list[list[dict[str, Any]]],
        targets: dict[str, list[dict[str, Any]]],
        duplicate: int,
        reorder: bool,
        phase_gap_s: float = 0.0,
    ) -> None:
        """Per endpoint, first attempts go out in order (reversed if ``reorder``), each event ``duplicate``
        times concurrently; failed attempts continue in retry tasks that this coroutine awaits."""
        self._mark_pending(targets)
        retries: list[asyncio.Task[None]] = []
        ordered_phases = [list(reversed(p)) for p in reversed(phases)] if reorder else phases

        async def one(event: dict[str, Any], endpoint_id: str, copy: int) -> None:
            task = await self.dispatcher.deliver_first(event, endpoint_id, copy)
            if task is not None:
                retries.append(task)

        async def to_endpoint(endpoint_id: str, phase: list[dict[str, Any]]) -> None:
            wanted = {e["id"] for e in targets[endpoint_id]}
            for event in phase:
                if event["id"] in wanted:
                    await asyncio.gather(*(one(event, endpoint_id, c) for c in range(duplicate)))

        for index, phase in enumerate(ordered_phases):
            if index and phase_gap_s:
                await asyncio.sleep(phase_gap_s)
            await asyncio.gather(*(to_endpoint(ep, phase) for ep in targets))
        if retries:
            await asyncio.gather(*retries)

    def _mark_pending(self, targets: dict[str, list[dict[str, Any]]]) -> None:
        """Each event is pending for each endpoint it is sent to until a delivery there succeeds."""
        for endpoint_id, events in targets.items():
            for event in events:
                stored = self.events.get(event["id"])
                if stored is not None:
                    stored.deliveries.setdefault(endpoint_id, False)
                    stored.obj["pending_webhooks"] = sum(not ok for ok in stored.deliveries.values())

    def _delivery_result(self, event_id: str, endpoint_id: str, succeeded: bool) -> None:
        stored = self.events.get(event_id)
        if stored is None:
            return
        stored.deliveries[endpoint_id] = stored.deliveries.get(endpoint_id, False) or succeeded
        stored.obj["pending_webhooks"] = sum(not ok for ok in stored.deliveries.values())

    def set_link_active(self, payment_link_id: str, active: bool) -> dict[str, Any]:
        """The merchant (de)activates the link in the Dashboard: ``payment_link.updated``, like any update."""
        stored = self.payment_links[payment_link_id]
        if stored.obj["active"] == active:
            return stored.obj
        stored.obj["active"] = active
        self._emit(self.make_event("payment_link.updated", stored.obj, account_id=stored.account_id,
                                   livemode=stored.livemode, previous_attributes={"active": not active}))
        return stored.obj

    # ------------------------------------------------------------------ a customer pays

    async def pay(
        self,
        payment_link_id: str,
        method: PayMethod = "card",
        outcome: PayOutcome = "succeeded",
        *,
        duplicate: int = 1,
        reorder: bool = False,
        email: str = "customer@example.com",
    ) -> PaymentResult:
        """Simulate a customer paying through the link; events are delivered in the background
        (``await result.delivered``). Raises ``PaymentLinkUnavailable`` for inactive/exhausted links."""
        return self._pay(payment_link_id, method, outcome, duplicate, reorder, email)

    def _pay(
        self,
        payment_link_id: str,
        method: PayMethod,
        outcome: PayOutcome,
        duplicate: int,
        reorder: bool,
        email: str,
    ) -> PaymentResult:
        if method not in ("card", "delayed") or outcome not in ("succeeded", "failed"):
            raise ValueError(f"unsupported method/outcome {method}/{outcome}")
        stored = self.payment_links.get(payment_link_id)
        if stored is None:
            raise KeyError(payment_link_id)
        link = stored.obj
        if not link["active"]:
            raise PaymentLinkUnavailable(f"payment link {payment_link_id} is inactive")
        restriction = (link.get("restrictions") or {}).get("completed_sessions")
        completes = not (method == "card" and outcome == "failed")
        if restriction and restriction["count"] >= restriction["limit"]:
            raise PaymentLinkUnavailable(
                f"payment link {payment_link_id} reached its completed sessions limit ({restriction['limit']})"
            )
        account_id, live = stored.account_id, stored.livemode
        amount = sum(li["amount_total"] for li in stored.line_items)
        currency = link["currency"]
        now = int(time.time())
        pi_id = new_id("pi", 24)
        session_id = new_id("cs_live" if live else "cs_test", 58)
        pi_metadata = dict((link.get("payment_intent_data") or {}).get("metadata") or {})
        pi: dict[str, Any] = {
            "id": pi_id,
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": 0,
            "amount_received": 0,
            "capture_method": "automatic_async",
            "client_secret": f"{pi_id}_secret_{new_id('x', 20)[2:]}",
            "created": now,
            "currency": currency,
            "customer": None,
            "description": (link.get("payment_intent_data") or {}).get("description"),
            "last_payment_error": None,
            "latest_charge": None,
            "livemode": live,
            "metadata": pi_metadata,
            "payment_method": new_id("pm", 24),
            "payment_method_types": ["card"] if method == "card" else ["us_bank_account"],
            "receipt_email": email,
            "status": "processing",
        }
        session: dict[str, Any] = {
            "id": session_id,
            "object": "checkout.session",
            "amount_subtotal": amount,
            "amount_total": amount,
            "client_reference_id": None,
            "created": now,
            "currency": currency,
            "customer": None,
            "customer_details": customer_details(email),
            "customer_email": None,
            "expires_at": now + 24 * 3600,
            "livemode": live,
            "metadata": dict(link.get("metadata") or {}),
            "mode": "payment",
            "payment_intent": pi_id,
            "payment_link": payment_link_id,
            "payment_method_types": pi["payment_method_types"],
            "payment_status": "unpaid",
            "status": "open",
            "success_url": (link["after_completion"].get("redirect") or {}).get("url"),
            "url": None,
        }
        fill(pi, payment_intent_defaults())
        fill(session, checkout_session_defaults(link))
        decline = {
            "code": "card_declined",
            "decline_code": "generic_decline",
            "message": "Your card was declined.",
            "type": "card_error",
        }
        ach_failure = {
            "code": "insufficient_funds",  # Stripe's code for a bank debit the account could not cover
            "message": "The customer's account has insufficient funds to cover this payment.",
            "type": "invalid_request_error",
        }

        def ev(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
            return self.make_event(kind, obj, account_id=account_id, livemode=live)

        def succeed() -> None:
            pi.update(status="succeeded", amount_received=amount)
            pi["latest_charge"] = self.money.add_charge(pi, method=method, account_id=account_id, livemode=live)["id"]

        prepare_invoice(link, session, pi, completes=completes)
        phases: list[list[dict[str, Any]]]
        if method == "card" and outcome == "succeeded":
            session.update(status="complete", payment_status="paid")
            succeed()
            phases = [[ev("checkout.session.completed", session), ev("payment_intent.succeeded", pi)]]
        elif method == "card":
            pi.update(status="requires_payment_method", last_payment_error=decline)
            phases = [[ev("payment_intent.payment_failed", pi)]]
        else:
            session.update(status="complete", payment_status="unpaid")
            first = [ev("checkout.session.completed", session)]
            if outcome == "succeeded":
                session["payment_status"] = "paid"
                succeed()
                second = [ev("checkout.session.async_payment_succeeded", session), ev("payment_intent.succeeded", pi)]
            else:
                pi.update(status="requires_payment_method", last_payment_error=ach_failure)
                second = [ev("checkout.session.async_payment_failed", session), ev("payment_intent.payment_failed", pi)]
            phases = [first, second]
        add_invoice_events(phases, link, session, pi, self.versions, ev, stored.line_items)
        if completes and restriction is not None:
            restriction["count"] += 1
        self.payment_intents[pi_id] = Stored(account_id, live, pi)
        self.checkout_sessions[session_id] = Stored(account_id, live, session)
        events = [e for phase in phases for e in phase]
        targets: dict[str, list[dict[str, Any]]] = {}
        for event in events:
            for endpoint in self._endpoints_for(account_id, live, event["type"]):
                targets.setdefault(endpoint.id, []).append(event)
        task = self.dispatcher.spawn(
            self._deliver_batches(phases, targets, duplicate, reorder, self.delayed_payment_settle_s)
        )
        return PaymentResult(
            payment_link=link,
            session=session if completes else None,
            payment_intent=pi,
            events=events,
            endpoint_ids=list(targets),
            delivered=task,
        )

    # ------------------------------------------------------------------ after a payment: refunds and disputes

    async def refund(
        self,
        payment_intent_id: str,
        amount: int | None = None,
        reason: str | None = "requested_by_customer",
        pending: bool | None = None,
        duplicate: int = 1,
        reorder: bool = False,
        *,
        requires_action: bool = False,
        metadata: dict[str, str] | None = None,
    ) -> MoneyBackResult:
        """Refund the payment (``amount`` None: the unrefunded rest) like the Dashboard would: raises
        ``StripeError`` as the API answers. A card refund succeeds at once, a bank debit's is pending
        (``pending`` forces either); ``requires_action`` makes one waiting for the customer (cancelable)."""
        return self.money.refund(payment_intent_id, amount, reason, pending, duplicate, reorder,
                                 requires_action=requires_action, metadata=metadata)

    async def settle_refund(self, refund_id: str, duplicate: int = 1, reorder: bool = False) -> MoneyBackResult:
        """A pending refund reaches the customer: succeeded, ``refund.updated``."""
        return self.money.settle(refund_id, duplicate, reorder)

    async def fail_refund(self, refund_id: str, failure_reason: str = "expired_or_canceled_card",
                          duplicate: int = 1, reorder: bool = False) -> MoneyBackResult:
        """The refund fails: ``refund.failed`` and ``refund.updated``; the charge counts it no more."""
        return self.money.fail(refund_id, failure_reason, duplicate, reorder)

    async def open_dispute(self, payment_intent_id: str, reason: str = "fraudulent", amount: int | None = None,
                           duplicate: int = 1, reorder: bool = False, *, warning: bool = False) -> MoneyBackResult:
        """The cardholder's bank disputes the payment: ``charge.dispute.created`` and
        ``charge.dispute.funds_withdrawn`` (``warning``: an inquiry, no funds withdrawn)."""
        return self.money.open(payment_intent_id, reason, amount, duplicate, reorder, warning)

    async def submit_dispute_evidence(self, dispute_id: str, evidence: dict[str, str] | None = None,
                                      duplicate: int = 1, reorder: bool = False) -> MoneyBackResult:
        """The merchant submits evidence (as ``POST /v1/disputes/{id}`` does): under_review."""
        return self.money.submit_evidence(dispute_id, evidence, duplicate, reorder)

    async def close_dispute(self, dispute_id: str, won: bool, duplicate: int = 1,
                            reorder: bool = False) -> MoneyBackResult:
        """The bank decides: ``charge.dispute.closed`` (won: plus ``charge.dispute.funds_reinstated``)."""
        return self.money.decide(dispute_id, won, duplicate, reorder)

    # ------------------------------------------------------------------ HTTP plumbing

    def _routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/v1/account", self._h(self._get_account))
        r.add_post("/v1/payment_links", self._h(self._create_payment_link))
        r.add_get("/v1/payment_links", self._h(self._list_payment_links))
        r.add_get("/v1/payment_links/{id}", self._h(self._get_payment_link))
        r.add_post("/v1/payment_links/{id}", self._h(self._update_payment_link))
        r.add_get("/v1/payment_links/{id}/line_items", self._h(self._list_line_items))
        r.add_post("/v1/webhook_endpoints", self._h(self._create_endpoint))
        r.add_get("/v1/webhook_endpoints", self._h(self._list_endpoints))
        r.add_get("/v1/webhook_endpoints/{id}", self._h(self._get_endpoint))
        r.add_post("/v1/webhook_endpoints/{id}", self._h(self._update_endpoint))
        r.add_delete("/v1/webhook_endpoints/{id}", self._h(self._delete_endpoint))
        r.add_get("/v1/checkout/sessions", self._h(self._list_sessions))
        r.add_get("/v1/checkout/sessions/{id}", self._h(self._get_session))
        r.add_get("/v1/payment_intents/{id}", self._h(self._get_payment_intent))
        r.add_get("/v1/events", self._h(self._list_events))
        r.add_get("/v1/events/{id}", self._h(self._get_event))
        self.money.routes(r, self._h)

    def _h(self, fn: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            ctx = request[_CTX]
            status, body = await fn(ctx)
            return web.json_response(body, status=status, dumps=lambda o: json.dumps(o, indent=2))

        return handler

    def _error_response(self, err: StripeError, request_id: str) -> web.Response:
        resp = web.json_response(err.body(request_id), status=err.status)
        if err.should_retry is not None:
            resp.headers["Stripe-Should-Retry"] = "true" if err.should_retry else "false"
        return resp

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        request_id = new_id("req", 14)
        route = request.match_info.route.resource
        template = route.canonical if route is not None else "<unmatched>"
        resp: web.StreamResponse
        try:
            resp = await self._pipeline(request, handler, request_id)
        except StripeError as err:
            resp = self._error_response(err, request_id)
        if "Request-Id" not in resp.headers:
            resp.headers["Request-Id"] = request_id
        resp.headers["Stripe-Version"] = request.headers.get("Stripe-Version", DEFAULT_API_VERSION)
        if request.method == "POST" and "Idempotency-Key" in request.headers:
            resp.headers["Idempotency-Key"] = request.headers["Idempotency-Key"]
        self.request_counts[(request.method, template, resp.status)] += 1
        if resp.status == 429:
            self.rate_limited += 1
        return resp

    async def _pipeline(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
        request_id: str,
    ) -> web.StreamResponse:
        faults = self.faults
        if faults.outage == "refuse":
            if request.transport is not None:
                request.transport.close()
            raise StripeError(503, API_ERROR_MESSAGE, type="api_error")
        if faults.outage == "503":
            raise StripeError(503, API_ERROR_MESSAGE, type="api_error")
        delay = faults.latency_s + (random.uniform(0, faults.latency_max_s) if faults.latency_max_s else 0.0)
        if delay > 0:
            await asyncio.sleep(delay)
        key_info = self._authenticate(request)
        account = self.accounts[key_info.account_id]
        bucket = self._buckets.get(key_info.key)
        if bucket is None:
            rate = self.rate_limit_live if key_info.livemode else self.rate_limit_test
            bucket = self._buckets[key_info.key] = _TokenBucket(rate)
        if not bucket.take() or (faults.rate_limit_rate and random.random() < faults.rate_limit_rate):
            raise StripeError(
                429, RATE_LIMIT_MESSAGE, code="rate_limit", should_retry=self.rate_limit_should_retry
            )
        if faults.error_rate and random.random() < faults.error_rate:
            self.injected_errors += 1
            raise StripeError(500, API_ERROR_MESSAGE, type="api_error")
        if request.match_info.route.resource is None:
            raise StripeError(
                404,
                f"Unrecognized request URL ({request.method}: {request.path}). Please see "
                "https://stripe.com/docs or we can help at https://support.stripe.com/.",
            )
        try:
            raw = await request.text() if request.method == "POST" else request.query_string
        except ConnectionResetError:  # the client died mid-request (the chaos suite SIGKILLs it): no traceback
            raise StripeError(400, "The client disconnected while sending the request.") from None
        if request.method == "POST" and raw and not request.content_type.startswith(
            "application/x-www-form-urlencoded"
        ):
            raise StripeError(400, "Invalid request: the body must be application/x-www-form-urlencoded.")
        params = decode_form(raw)
        idem_key = request.headers.get("Idempotency-Key") if request.method == "POST" else None
        request[_CTX] = _Ctx(request, account, key_info.livemode, params, request_id, idem_key)
        if idem_key is None:
            return await handler(request)
        return await self._idempotent(request, handler, key_info, params, idem_key, request_id)

    def _authenticate(self, request: web.Request) -> ApiKey:
        auth = request.headers.get("Authorization", "")
        key = ""
        if auth.startswith("Bearer "):
            key = auth[len("Bearer "):].strip()
        elif auth.startswith("Basic "):
            import base64

            with contextlib.suppress(ValueError):
                key = base64.b64decode(auth[6:]).decode().split(":", 1)[0]
        if not key:
            raise StripeError(
                401,
                "You did not provide an API key. You need to provide your API key in the Authorization header, "
                "using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See "
                "https://stripe.com/docs/api#authentication for details, or we can help at "
                "https://support.stripe.com/.",
            )
        info = self.keys.get(key)
        if info is None or info.revoked:
            raise StripeError(401, f"Invalid API Key provided: {mask_key(key)}")
        return info

    async def _idempotent(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
        key_info: ApiKey,
        params: dict[str, Any],
        idem_key: str,
        request_id: str,
    ) -> web.StreamResponse:
        scope = (key_info.account_id, key_info.livemode, idem_key)
        fingerprint = json.dumps(params, sort_keys=True)
        saved = self._saved_idempotent(scope)
        if saved is not None:
            if saved.method != request.method or saved.path != request.path:
                raise StripeError(
                    400,
                    "Keys for idempotent requests can only be used for the same endpoint they were first used "
                    f"for ('{saved.method} {saved.path}' vs '{request.method} {request.path}'). Try using a "
                    f"key other than '{idem_key}' if you meant to execute a different request.",
                    type="idempotency_error",
                )
            if saved.fingerprint != fingerprint:
                raise StripeError(
                    400,
                    "Keys for idempotent requests can only be used with the same parameters they were first "
                    f"used with. Try using a key other than '{idem_key}' if you meant to execute a different "
                    "request.",
                    type="idempotency_error",
                )
            self.idempotent_replays += 1
            resp = web.Response(body=saved.body, status=saved.status, content_type="application/json")
            resp.headers["Idempotent-Replayed"] = "true"
            resp.headers["Original-Request"] = saved.request_id
            resp.headers["Request-Id"] = request_id
            return resp
        if scope in self._idem_inflight:
            raise StripeError(
                409,
                "There is currently another in-progress request using this Stripe-Idempotency-Key. Please "
                "try again later.",
                type="idempotency_error",
                code="idempotency_key_in_use",
            )
        self._idem_inflight.add(scope)
        try:
            resp = await handler(request)
        finally:
            self._idem_inflight.discard(scope)
        # Stripe saves results only for requests that started executing: validation errors are not saved.
        if 200 <= resp.status < 300 and isinstance(resp, web.Response) and resp.body is not None:
            body = resp.body if isinstance(resp.body, bytes) else bytes(resp.body)  # type: ignore[arg-type]
            self._idem[scope] = _Idem(request.method, request.path, fingerprint, resp.status, body, request_id,
                                      self.now())
        return resp

    # ------------------------------------------------------------------ handlers

    def _owned(self, table: dict[str, Stored], ctx: _Ctx, object_id: str, kind: str) -> Stored:
        stored = table.get(object_id)
        if stored is None or stored.account_id != ctx.account.id or stored.livemode != ctx.livemode:
            raise not_found(kind, object_id)
        return stored

    def _paginate(self, ctx: _Ctx, objs: list[dict[str, Any]], url: str) -> dict[str, Any]:
        """``objs`` newest first, like Stripe lists."""
        limit = get_int(ctx.params, "limit", "limit", minimum=1, maximum=100) or 10
        after = get_str(ctx.params, "starting_after", "starting_after")
        before = get_str(ctx.params, "ending_before", "ending_before")
        ids = [o["id"] for o in objs]
        if after:
            if after not in ids:
                raise not_found("object", after, "starting_after")
            objs = objs[ids.index(after) + 1 :]
        elif before:
            if before not in ids:
                raise not_found("object", before, "ending_before")
            objs = objs[: ids.index(before)][-limit:]
        return {"object": "list", "data": objs[:limit], "has_more": len(objs) > limit, "url": url}

    def _mine(self, table: dict[str, Stored], ctx: _Ctx) -> list[dict[str, Any]]:
        # newest first: insertion order (a Payment Link has no `created` to sort by)
        return [s.obj for s in reversed(table.values())
                if s.account_id == ctx.account.id and s.livemode == ctx.livemode]

    async def _get_account(self, ctx: _Ctx) -> tuple[int, dict[str, Any]]:
        return 200, ctx.account.to_api()

    async def _create_payment_link(self, ctx: _Ctx) -> tuple[int, dict[str, Any]]:
        params = ctx.params
        check_unknown(params, CREATE_PARAMS)
        line_items, currency, _total = parse_line_items(params, livemode=ctx.livemode)
        link_id = new_id("plink", 24)
        obj: dict[str, Any] = {
            "id": link_id,
            "object": "payment_link",
            "active": True,
            "after_completion": parse_after_completion(params, None),
            "allow_promotion_codes": False,
            "application": None,
            "application_fee_amount": None,
            "application_fee_percent": None,
            "automatic_tax": {"enabled": False, "liability": None},
            "billing_address_collection": "auto",
            "currency": currency,
            "customer_creation": "if_required",
            "inactive_message": None,
            "livemode": ctx.livemode,
            "metadata": apply_metadata({}, params.get("metadata")),
            "on_behalf_of": None,
            "payment_intent_data": parse_payment_intent_data(params, None),
            "payment_method_collection": "always",
            "payment_method_types": None,
            "restrictions": parse_restrictions(params, None),
            "submit_type": "auto",
            "url": f"https://buy.stripe.com/{'' if ctx.livemode else 'test_'}{new_id('x', 14)[2:]}",
        }
        apply_simple_settings(params, obj)
        apply_invoice_creation(params, obj)
        fill(obj, payment_link_defaults())
        self.payment_links[link_id] = Stored(ctx.account.id, ctx.livemode, obj, line_items)
        invoice = obj["metadata"].get("invoice_uid") or obj["metadata"].get("invoice_id")
        if invoice:
            self.links_created_by_invoice[invoice] += 1
        self._emit(
            self.make_event(
                "payment_link.created", obj, account_id=ctx.account.id, livemode=ctx.livemode,
                request_id=ctx.request_id, idempotency_key=ctx.idempotency_key,
            )
        )
        return 200, obj

    def _emit(self, event: dict[str, Any]) -> None:
        """Deliver an API-triggered event to the endpoints subscribed to it (``*`` ones included)."""
        stored = self.events[event["id"]]
        if self._endpoints_for(stored.account_id, stored.livemode, event["type"]):
            self.deliver(event)

    async def _list_payment_links(self, ctx: _Ctx) -> tuple[int, dict[str, Any]]:
        objs = self._mine(self.payment_links, ctx)
        active = get_bool(ctx.params, "active", "active")
        if active is not None:
            objs = [o for o in objs if o["active"] == active]
        return 200, self._paginate(ctx, objs, "/v1/payment_links")

    async def _get_payment_link(self, ctx: _Ctx) -> tuple[int, dict[str, Any]]:
        return 200, self._owned(self.payment_links, ctx, ctx.request.match_info["id"], "payment link").obj

    async def _update_payment_link(self, ctx: _Ctx) -> tuple[int, dict[str, Any]]:
        stored = self._owned(self.payment_links, ctx, ctx.request.match_info["id"], "payment link")
        params = ctx.params
        check_unknown(params, UPDATE_PARAMS)
        if "line_items" in params:
            raise StripeError(400, "The Stripe stand-in does not update line items.", param="line_items")
        obj = dict(stored.obj)
        before = json.loads(json.dumps(stored.obj))
        active = get_bool(params, "active", "active")
        if active is not None:
            obj["active"] = active
        obj["metadata"] = apply_metadata(obj["metadata"], params.get("metadata"))
        obj["after_completion"] = parse_after_completion(params, obj["after_completion"])
        obj["restrictions"] = parse_restrictions(params, obj["restrictions"])
        obj["payment_intent_data"] = parse_payment_intent_data(params, obj["payment_intent_data"])
        apply_simple_settings(params, obj)
        apply_invoice_creation(params, obj)
        stored.obj.clear()
        stored.obj.update(obj)
        previous = {k: v for k, v in before.items() if obj.get(k) != v}
        if previous:
            self._emit(
                self.make_event(
                    "payment_link.updated", obj, account_id=ctx.account.id, livemode=ctx.livemode,
                    request_id=ctx.request_id, idempotency_key=ctx.idempotency_key,
                    previous_attributes=previous,
                )
            )
        return 200, stored.obj

    async def _list_line_items(self, ctx: _Ctx) -> tuple[int, dict[str, Any]]:
        link_id = ctx.request.match_info["id"]
        stored = self._owned(self.payment_links, ctx, link_id, "payment link")
        return 200, self._paginate(ctx, list(stored.line_items), f"/v1/payment_links/{link_id}/line_items")

    async def _create_endpoint(self, ctx: _Ctx) -> tuple[int, dict[str, Any]]:
        params = ctx.params
        check_unknown(params, {"url", "enabled_events", "description", "metadata", "api_version", "connect",
                               "expand"})
        url = get_str(params, "url", "url", required=True)
        assert url is not None
        self._check_url(url)
        events = self._enabled_events(params, required=True)
        assert events is not None
        mine = [e for e in self.webhook_endpoints.values()
                if e.account_id == ctx.account.id and e.livemode == ctx.livemode]
        if len(mine) >= MAX_WEBHOOK_ENDPOINTS:
            raise StripeError(
                400,
                f"You have reached the maximum of {MAX_WEBHOOK_ENDPOINTS} "
                f"{'live' if ctx.livemode else 'test'} webhook endpoints for this account.",
                param="url",
            )
        endpoint = WebhookEndpoint(
            id=new_id("we", 24),
            account_id=ctx.account.id,
            livemode=ctx.livemode,
            url=url,
            enabled_events=events,
            secrets=[self._issued(new_id("whsec", 32))],
            created=int(time.time()),
            api_version=get_str(params, "api_version", "api_version"),
            description=get_str(params, "description", "description") or None,
            metadata=apply_metadata({}, params.get("metadata")),
        )
        self.webhook_endpoints[endpoint.id] = endpoint
        return 200, endpoint.to_api(with_secret=True)

    @staticmethod
    def _check_url(url: str) -> None:
        if not url.startswith(("http://", "https://")) or len(url) < 10:
            raise StripeError(400, "Invalid URL: An explicit scheme (such as https) must be provided.",
                              code="url_invalid", param="url")

    @staticmethod
    def _enabled_events(params: dict[str, Any], *, required: bool) -> list[str] | None:
        events = get_list(params, "enabled_events", "enabled_events")
        if events is None:
            if required:
                raise StripeError(400, "Missing required param: enabled_events.", code="parameter_missing",
                                  param="enabled_events")
            return None
        if not events:
            raise StripeError(400, "enabled_events must not be empty", param="enabled_events")
        for index, name in enumerate(events):
            if name != "*" and name not in EVENT_TYPES:
                raise StripeError(
                    400,
                    f"Invalid enabled_events[{index}]: must be one of a known event type or '*' (got {name!r})",
                    param=f"enabled_events[{index}]",
                )
        return list(dict.fromkeys(events))

    def _owned_endpoint(self, ctx: _Ctx) -> WebhookEndpoint:
        endpoint_id = ctx.request.match_info["id"]
        endpoint = self.webhook_endpoints.get(endpoint_id)
        if endpoint is None or endpoint.account_id != ctx.account.id or endpoint.livemode != ctx.livemode:
            raise not_found("webhook_endpoint", endpoint_id)
        return endpoint

    async def _list_endpoints(self, ctx: _Ctx) -> tuple[int, dict[str, Any]]:
        mine = [e.to_api() for e in reversed(self.webhook_endpoints.values())
                if e.account_id == ctx.account.id and e.livemode == ctx.livemode]
        mine.sort(key=lambda o: o["created"], reverse=True)
        return 200, self._paginate(ctx, mine, "/v1/webhook_endpoints")

    async def _get_endpoint(self, ctx: _Ctx) -> tuple[int, dict[str, Any]]:
        return 200, self._owned_endpoint(ctx).to_api()

    async def _update_endpoint(self, ctx: _Ctx) -> tuple[int, dict[str, Any]]:
        endpoint = self._owned_endpoint(ctx)
        params = ctx.params
        check_unknown(params, {"url", "enabled_events", "description", "metadata", "disabled", "expand"})
        url = get_str(params, "url", "url")
        if url is not None:
            self._check_url(url)
        events = self._enabled_events(params, required=False)
        disabled = get_bool(params, "disabled", "disabled")
        metadata = apply_metadata(endpoint.metadata, params.get("metadata"))
        if url is not None:
            endpoint.url = url
        if events is not None:
            endpoint.enabled_events = events
        if disabled is not None:
            endpoint.status = "disabled" if disabled else "enabled"
        if "description" in params:
            endpoint.description = get_str(params, "description", "description") or None
        endpoint.metadata = metadata
        return 200, endpoint.to_api()

    async def _delete_endpoint(self, ctx: _Ctx) -> tuple[int, dict[str, Any]]:
        endpoint = self._owned_endpoint(ctx)
        del self.webhook_endpoints[endpoint.id]
        return 200, {"id": endpoint.id, "object": "webhook_endpoint", "deleted": True}

    async def _list_sessions(self, ctx: _Ctx) -> tuple[int, dict[str, Any]]:
        objs = self._mine(self.checkout_sessions, ctx)
        for key in ("payment_link", "status", "payment_intent", "customer"):
            value = get_str(ctx.params, key, key)
            if value is not None:
                objs = [o for o in objs if o.get(key) == value]
        return 200, self._paginate(ctx, objs, "/v1/checkout/sessions")

    async def _get_session(self, ctx: _Ctx) -> tuple[int, dict[str, Any]]:
        return 200, self._owned(self.checkout_sessions, ctx, ctx.request.match_info["id"], "checkout.session").obj

    async def _get_payment_intent(self, ctx: _Ctx) -> tuple[int, dict[str, Any]]:
        pi = self._owned(self.payment_intents, ctx, ctx.request.match_info["id"], "payment_intent").obj
        return 200, self.money.expanded_intent(pi, get_list(ctx.params, "expand", "expand") or [])

    def _retained(self, ctx: _Ctx) -> list[Stored]:
        """The account's events of the last 30 days, newest first (insertion order within one second)."""
        oldest = self.now() - EVENT_RETENTION_S
        mine = [s for s in reversed(self.events.values()) if s.account_id == ctx.account.id
                and s.livemode == ctx.livemode and s.obj["created"] >= oldest]
        return sorted(mine, key=lambda s: -int(s.obj["created"]))

    async def _list_events(self, ctx: _Ctx) -> tuple[int, dict[str, Any]]:
        """``GET /v1/events`` as Stripe documents it: ``type`` (``*`` a wildcard) or ``types`` (up to 20, not both),
        ``created`` (a timestamp or a gt/gte/lt/lte range), ``delivery_success`` (false: events still pending or
        failed at one endpoint or more; true: delivered to every endpoint they were sent to), the events of the
        last 30 days, newest first."""
        params = ctx.params
        check_unknown(params, {"type", "types", "created", "delivery_success", "limit", "starting_after",
                               "ending_before", "expand"})
        kind = get_str(params, "type", "type")
        kinds = get_list(params, "types", "types")
        if kind is not None and kinds is not None:
            raise StripeError(400, "You may pass either `type` or `types`, but not both.", param="types")
        if kinds is not None and len(kinds) > MAX_EVENT_TYPES:
            raise StripeError(400, f"You may pass at most {MAX_EVENT_TYPES} event types in `types`.", param="types")
        wanted = event_type_filter(kind, kinds)
        within = created_filter(params)
        delivered = get_bool(params, "delivery_success", "delivery_success")
        objs = [s.obj for s in self._retained(ctx) if wanted(s.obj["type"]) and within(s.obj["created"])
                and (delivered is None or all(s.deliveries.values()) == delivered)]
        return 200, self._paginate(ctx, objs, "/v1/events")

    async def _get_event(self, ctx: _Ctx) -> tuple[int, dict[str, Any]]:
        stored = self._owned(self.events, ctx, ctx.request.match_info["id"], "event")
        if stored.obj["created"] < self.now() - EVENT_RETENTION_S:
            raise not_found("event", stored.obj["id"])
        return 200, stored.obj


def event_type_filter(kind: str | None, kinds: list[Any] | None) -> Callable[[str], bool]:
    """``type`` may end in ``*`` (``charge.*``: every charge event); ``types`` are exact names."""
    if kinds is not None:
        for index, name in enumerate(kinds):
            if not isinstance(name, str) or not name:
                raise StripeError(400, f"Invalid string: {name!r}", param=f"types[{index}]")
        exact = set(kinds)
        return lambda name: name in exact
    if kind is None:
        return lambda name: True
    if kind.endswith("*"):
        prefix = kind[:-1]
        return lambda name: name.startswith(prefix)
    return lambda name: name == kind


def created_filter(params: dict[str, Any]) -> Callable[[int], bool]:
    """``created=<ts>`` (exactly) or ``created[gt|gte|lt|lte]=<ts>``."""
    value = params.get("created")
    if value is None:
        return lambda created: True
    if isinstance(value, str):
        exact = get_int(params, "created", "created")
        return lambda created: created == exact
    if not isinstance(value, dict):
        raise StripeError(400, "Invalid created: must be an integer or a hash of gt, gte, lt, lte", param="created")
    check_unknown(value, RANGE_KEYS, "created")
    bounds = {op: get_int(value, op, f"created[{op}]") for op in value}
    checks: list[Callable[[int], bool]] = []
    for op, bound in bounds.items():
        assert bound is not None
        checks.append({"gt": lambda c, b=bound: c > b, "gte": lambda c, b=bound: c >= b,
                       "lt": lambda c, b=bound: c < b, "lte": lambda c, b=bound: c <= b}[op])
    return lambda created: all(check(created) for check in checks)


async def run_standin(
    host: str = "127.0.0.1",
    port: int = 12111,
    *,
    keys: Sequence[str] = (DEMO_TEST_KEY,),
    ready: Callable[[StripeStandin], None] | None = None,
    **options: Any,
) -> None:
    """Serve until cancelled, with one account per given key (the demo key by default)."""
    standin = StripeStandin(host, port, **options)
    for key in keys:
        standin.add_account(key)
    async with standin:
        if ready is not None:
            ready(standin)
        await asyncio.Event().wait()
