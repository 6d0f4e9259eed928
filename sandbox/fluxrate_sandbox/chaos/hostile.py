"""Scenario 6: hypothesis generates hostile webhook requests (bad signature headers, wrong secrets, old and future
timestamps, truncated, oversized, deeply nested and non-JSON bodies, metadata with wrong types or another tenant's
ids). No answer may be a 5xx or carry a stack trace, and no invoice may change without a valid signature.

Hypothesis runs in a worker thread and sends each request synchronously (so a violation shrinks to a minimal
example); the sandbox keeps serving in the event loop meanwhile.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import re
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from fluxrate.models import DEFAULT_ENABLED_EVENTS
from fluxrate.webhook_receiver.settings import MIB
from fluxrate_sandbox.chaos.outcome import Outcome, Size
from fluxrate_sandbox.chaos.stack import Obj, Stack, Tenant, answer_class, payment_projection

TOLERANCE_S = 300  # the receiver's default --signature-tolerance
# what an HTTP client can put in a header value (no CR, LF or NUL): latin-1 from space on, and tab
HEADER_CHARS = st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f", include_characters="\t")
STACK_TRACE = re.compile(r"Traceback \(most recent call last\)|File \"[^\"]+\", line \d+")


@dataclass(frozen=True)
class Target:
    """What the generator may aim at: two tenants, their secrets and invoices, and a decoy invoice of tenant A
    that validly signed hostile events are allowed to pay (all others must not change)."""

    a: Tenant
    b: Tenant
    a_secret: str
    b_secret: str
    a_invoices: list[Obj]
    b_invoices: list[Obj]
    decoy: Obj


@dataclass
class Request:
    url: str
    body: bytes
    headers: dict[str, str]
    label: str  # kind of body / signature, for the figures
    validly_signed: bool


@dataclass
class Tally:
    sent: int = 0
    by_class: Counter[str] = field(default_factory=Counter)
    by_label: Counter[str] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    traces: list[str] = field(default_factory=list)
    bodies: list[str] = field(default_factory=list)
    validly_signed: int = 0


WRONG_TYPES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                        st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(),
                                                                             max_size=2))


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, picked with the given relative weights."""
    table = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.sampled_from(table).flatmap(lambda strategy: strategy)


def metadata(target: Target) -> st.SearchStrategy[Any]:
    other = [i for i in target.b_invoices]
    own = [i for i in target.a_invoices]
    return st.one_of(
        WRONG_TYPES,  # metadata itself of the wrong type
        st.fixed_dictionaries({"invoice_id": WRONG_TYPES}, optional={"invoice_uid": WRONG_TYPES,
                                                                      "namespace": WRONG_TYPES}),
        st.sampled_from(other).map(lambda i: {  # another tenant's invoice, by its real ids
            "invoice_id": i["metadata"]["name"], "invoice_uid": i["metadata"]["uid"],
            "namespace": i["metadata"]["namespace"], "customer_id": i["spec"]["customer"]["id"]}),
        st.tuples(st.sampled_from(own), st.sampled_from(other)).map(lambda p: {  # own name, the other's uid
            "invoice_id": p[0]["metadata"]["name"], "invoice_uid": p[1]["metadata"]["uid"]}),
        st.fixed_dictionaries({"invoice_id": st.text(max_size=300), "invoice_uid": st.uuids().map(str)}),
    )


def decoy_metadata(target: Target) -> dict[str, str]:
    return {"invoice_id": target.decoy["metadata"]["name"], "invoice_uid": target.decoy["metadata"]["uid"],
            "namespace": target.a.namespace}


def event_bodies(target: Target) -> st.SearchStrategy[tuple[str, Any]]:
    """(label, event as data) pairs: mostly event-shaped, with hostile field types."""
    types = st.one_of(st.sampled_from(list(DEFAULT_ENABLED_EVENTS)), st.text(max_size=40), WRONG_TYPES)
    amount = st.one_of(st.integers(min_value=-(2**70), max_value=2**70), WRONG_TYPES, st.text(max_size=10))
    obj = st.fixed_dictionaries(
        {"id": st.one_of(st.text(max_size=30), WRONG_TYPES), "metadata": metadata(target)},
        optional={"object": st.sampled_from(["checkout.session", "payment_intent", "invoice"]),
                  "amount_total": amount, "amount_received": amount, "amount": amount,
                  "currency": st.one_of(st.sampled_from(["usd", "jpy", "xxx", ""]), WRONG_TYPES),
                  "payment_status": st.one_of(st.sampled_from(["paid", "unpaid"]), WRONG_TYPES),
                  "payment_intent": st.one_of(st.text(max_size=30), WRONG_TYPES),
                  "last_payment_error": st.one_of(WRONG_TYPES, st.fixed_dictionaries({"message": WRONG_TYPES}))},
    )
    event = st.fixed_dictionaries(
        {"id": st.one_of(st.text(min_size=1, max_size=40).map(lambda s: "evt_" + s), WRONG_TYPES),
         "type": types, "data": st.one_of(st.fixed_dictionaries({"object": obj}), WRONG_TYPES)},
        optional={"livemode": st.one_of(st.booleans(), WRONG_TYPES), "object": st.just("event"),
                  "created": st.one_of(st.integers(), WRONG_TYPES)},
    )
    decoy_event = st.fixed_dictionaries({  # well-formed ids for the decoy invoice, hostile amounts
        "id": st.text(min_size=1, max_size=20).map(lambda s: "evt_decoy_" + s),
        "type": st.sampled_from(list(DEFAULT_ENABLED_EVENTS)),
        "livemode": st.just(False),
        "data": st.fixed_dictionaries({"object": st.fixed_dictionaries(
            {"id": st.text(max_size=20), "metadata": st.just(decoy_metadata(target)),
             "amount_total": amount, "amount_received": amount, "currency": st.one_of(st.text(max_size=4),
                                                                                      WRONG_TYPES),
             "payment_status": st.one_of(st.sampled_from(["paid", "unpaid"]), WRONG_TYPES)})}),
    })
    return weighted(
        (6, event.map(lambda e: ("event", e))),
        (3, decoy_event.map(lambda e: ("decoy event", e))),
        (1, st.one_of(st.lists(st.integers()), st.integers(), st.text(), st.none()).map(
            lambda v: ("JSON not an object", v))),
    )


def raw_bodies(target: Target) -> st.SearchStrategy[tuple[str, bytes]]:
    def encode(pair: tuple[str, Any]) -> tuple[str, bytes]:
        return pair[0], json.dumps(pair[1], indent=2).encode()

    encoded = event_bodies(target).map(encode)
    return weighted(
        (60, encoded),
        (10, st.tuples(encoded, st.floats(0, 1)).map(lambda p: ("truncated", p[0][1][: int(len(p[0][1]) * p[1])]))),
        (5, st.binary(max_size=2000).map(lambda b: ("binary", b))),
        (5, st.text(max_size=500).map(lambda t: ("not JSON text", t.encode("utf-8", "surrogatepass")))),
        (8, st.integers(10, 200_000).map(lambda d: ("deeply nested", b"[" * d + b"]" * d))),
        (3, st.just(("empty", b""))),
        (2, st.integers(1, 100_000).map(lambda k: ("oversized", b"{" + b" " * (MIB + k) + b"}"))),
    )


def sign_bytes(body: bytes, secret: str, timestamp: int) -> str:
    """Stripe's scheme (``sign_payload`` for text) over raw bytes, which need not be UTF-8."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def signatures(target: Target, body: bytes) -> st.SearchStrategy[tuple[str, str | None, bool]]:
    """(label, Stripe-Signature header or None, validly signed with the URL's tenant secret)."""
    now = int(time.time())

    def signed(secret: str, ts: int) -> str:
        return sign_bytes(body, secret, ts)

    return weighted(  # hypothesis favours the first entries
        (40, st.just(("valid", signed(target.a_secret, now), True))),
        (4, st.just(("missing", None, False))),
        (6, st.text(HEADER_CHARS, max_size=200).map(lambda h: ("garbage header", h, False))),
        (6, st.sampled_from(["t=", "v1=", "t=abc,v1=def", "t=1,v1=", ",,,", "t=-1,v1=00", "v0=abc",
                             "t=99999999999999999999,v1=x", "t=1700000000,v1=" + "0" * 64]).map(
            lambda h: ("malformed header", h, False))),
        (3, st.integers(1, 50).map(lambda n: ("many v1 entries",
                                              f"t={now}," + ",".join(f"v1={'ab' * 32}" for _ in range(n)), False))),
        (6, st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=8, max_size=40).map(
            lambda s: ("wrong secret", signed("whsec_" + s, now), False))),
        (4, st.just(("other tenant's secret", signed(target.b_secret, now), False))),
        (5, st.integers(TOLERANCE_S + 1, 10**8).map(lambda d: ("old timestamp", signed(target.a_secret, now - d),
                                                               False))),
        (4, st.integers(TOLERANCE_S + 60, 10**8).map(lambda d: ("future timestamp",
                                                                signed(target.a_secret, now + d), False))),
    )


def requests(target: Target) -> st.SearchStrategy[Request]:
    @st.composite
    def build(draw: st.DrawFn) -> Request:
        body_label, body = draw(raw_bodies(target))
        url = draw(st.sampled_from([target.a.webhook_url] * 8 + [target.b.webhook_url, target.a.webhook_url[:-1]]))
        sig_label, header, valid = draw(signatures(target, body))
        valid = valid and url == target.a.webhook_url
        headers = {"Content-Type": draw(st.sampled_from(["application/json", "text/plain", "application/xml"]))}
        if header is not None:
            headers["Stripe-Signature"] = header
        return Request(url, body, headers, f"{body_label} / {sig_label}", valid)

    return build()


def send(request: Request, tally: Tally) -> None:
    req = urllib.request.Request(request.url, data=request.body, headers=request.headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            status: int | None = resp.status
            text = resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as exc:
        status, text = None, type(exc).__name__
    tally.sent += 1
    tally.validly_signed += request.validly_signed
    tally.by_class[answer_class(status)] += 1
    body_label, signature_label = request.label.split(" / ")
    tally.by_label[f"body: {body_label}"] += 1
    tally.by_label[f"signature: {signature_label}"] += 1
    tally.bodies.append(text)
    if status is None or status >= 500:
        tally.server_errors.append(f"{status} for {request.label}: {text[:200]}")
    if STACK_TRACE.search(text):
        tally.traces.append(f"{request.label}: {text[:200]}")
    assert status is not None and status < 500, f"{status} for {request.label}: {text[:300]}"
    assert not STACK_TRACE.search(text), f"stack trace in the answer to {request.label}"


def generate_and_send(target: Target, examples: int, run_seed: int, tally: Tally) -> str | None:
    """One hypothesis run; returns the minimal failing example's error, if any."""

    @seed(run_seed)
    @settings(max_examples=examples, deadline=None, database=None, derandomize=False,
              phases=(Phase.generate, Phase.shrink), suppress_health_check=list(HealthCheck),
              report_multiple_bugs=False)
    @given(requests(target))
    def property_(request: Request) -> None:
        send(request, tally)

    try:
        property_()
    except AssertionError as exc:
        return str(exc)[:500]
    return None


async def hostile_input(stack: Stack, size: Size, rng: random.Random, outcome: Outcome) -> None:
    a, b = await stack.tenant("chaos-hostile-a"), await stack.tenant("chaos-hostile-b")
    a_invoices = await stack.open_invoices(a, 3)
    b_invoices = await stack.open_invoices(b, 3)
    (decoy,) = await stack.open_invoices(a, 1, prefix="decoy")
    target = Target(a, b, stack.signing_secrets(a)[0], stack.signing_secrets(b)[0], a_invoices, b_invoices, decoy)
    watched = [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in [*a_invoices, *b_invoices]]
    before = {key: payment_projection(stack.invoice(*key)) for key in watched}
    wanted = size.n(10_000)
    tally = Tally()
    failure: str | None = None
    runs = 0
    while tally.sent < wanted and failure is None and runs < 5:
        failure = await asyncio.to_thread(generate_and_send, target, wanted - tally.sent + 50, rng.randrange(2**32),
                                          tally)
        runs += 1
    stack.answers.bodies.extend(tally.bodies)
    stack.answers.by_class.update(tally.by_class)
    changed = [key for key in watched if payment_projection(stack.invoice(*key)) != before[key]]
    decoy_phase = (stack.invoice(a.namespace, decoy["metadata"]["name"]).get("status") or {}).get("phase")
    outcome.figures.update({
        "hostile requests": tally.sent, "validly signed (to reach parsing)": tally.validly_signed,
        **{f"answers {k}": v for k, v in sorted(tally.by_class.items())},
        "5xx caused by input": len(tally.server_errors), "answers with a stack trace": len(tally.traces),
        "invoices changed without a valid signature": len(changed), "decoy invoice phase": decoy_phase or "",
        **dict(sorted(tally.by_label.items())),
    })
    if failure:
        outcome.figures["minimal failing example"] = failure
    if tally.server_errors:
        outcome.figures["first 5xx"] = tally.server_errors[0]
    outcome.check(f"at least {wanted} generated requests", tally.sent >= wanted)
    outcome.check("no 5xx caused by input", not tally.server_errors)
    outcome.check("no stack trace in any answer", not tally.traces)
    outcome.check("no invoice changed without a valid signature", not changed)
