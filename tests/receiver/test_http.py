"""Point 1 and 2 of the issue: routes and the answers to deliveries that must not be processed."""

from __future__ import annotations

import json
import time

import pytest

from fluxrate.webhook_receiver.processing import OFFLOAD_BYTES
from fluxrate.webhook_receiver.settings import MIB

from .conftest import Bench, receiver_settings


async def test_health_ready_and_metrics_routes(bench: Bench) -> None:
    base = bench.running.url
    async with bench.http.get(f"{base}/healthz") as resp:
        assert resp.status == 200
    async with bench.http.get(f"{base}/readyz") as resp:
        assert resp.status == 200
    async with bench.http.get(f"{base}/metrics") as resp:
        assert resp.status == 200
        assert "fluxrate_receiver_delivery_duration_seconds_bucket" in await resp.text()


async def test_not_ready_while_the_kubernetes_api_is_unreachable(bench: Bench) -> None:
    bench.sandbox.faults.outage = True
    try:
        async with bench.http.get(f"{bench.running.url}/readyz") as resp:
            assert resp.status == 503
        async with bench.http.get(f"{bench.running.url}/healthz") as resp:
            assert resp.status == 200
    finally:
        bench.sandbox.faults.clear()
    async with bench.http.get(f"{bench.running.url}/readyz") as resp:
        assert resp.status == 200


@pytest.fixture
async def paid_event(bench: Bench) -> str:
    await bench.integration()
    _, link = await bench.invoice("inv-1")
    event = bench.event("checkout.session.completed", {
        "id": "cs_test_1", "object": "checkout.session", "amount_total": 23650, "currency": "usd",
        "livemode": False, "metadata": link["metadata"], "payment_intent": "pi_1", "payment_status": "paid"})
    return json.dumps(event)


async def _unchanged(bench: Bench) -> None:
    status = await bench.invoice_status("inv-1")
    assert status["phase"] == "Open" and not status.get("processedEvents")


async def test_missing_signature_is_400_and_nothing_is_processed(bench: Bench, paid_event: str) -> None:
    code, answer = await bench.post(paid_event, unsigned=True)
    assert (code, answer["outcome"]) == (400, "signature_failed")
    assert "No Stripe-Signature header" in answer["reason"]
    await _unchanged(bench)


async def test_unparsable_signature_is_400(bench: Bench, paid_event: str) -> None:
    code, answer = await bench.post(paid_event, signature="sha256=abc")
    assert (code, answer["outcome"]) == (400, "signature_failed")
    assert "could not be parsed" in answer["reason"]
    await _unchanged(bench)


async def test_wrong_secret_is_400_with_the_guides_troubleshooting_hint(bench: Bench, paid_event: str) -> None:
    code, answer = await bench.post(paid_event, secret="whsec_someoneelsessecret0000000000")
    assert (code, answer["outcome"]) == (400, "signature_failed")
    assert "didn't match the stored webhook secret" in answer["reason"]
    assert "whsec_" in answer["reason"] and "not the endpoint URL" in answer["reason"]
    await _unchanged(bench)


async def test_tampered_body_is_rejected(bench: Bench, paid_event: str) -> None:
    signature = bench.sign(paid_event, bench.secrets[f"{bench.namespace}/stripe"])
    tampered = paid_event.replace("23650", "1")
    code, answer = await bench.post(tampered, signature=signature)
    assert (code, answer["outcome"]) == (400, "signature_failed")
    await _unchanged(bench)


@pytest.mark.parametrize("skew", [-301, 301])
async def test_timestamp_outside_the_tolerance_is_400_clock_skew(bench: Bench, paid_event: str, skew: int) -> None:
    signature = bench.sign(paid_event, bench.secrets[f"{bench.namespace}/stripe"], timestamp=int(time.time()) + skew)
    code, answer = await bench.post(paid_event, signature=signature)
    assert (code, answer["outcome"]) == (400, "signature_failed")
    assert "clock skew" in answer["reason"] and "300 s" in answer["reason"]
    await _unchanged(bench)


async def test_timestamp_within_the_tolerance_is_accepted(bench: Bench, paid_event: str) -> None:
    signature = bench.sign(paid_event, bench.secrets[f"{bench.namespace}/stripe"], timestamp=int(time.time()) - 250)
    code, answer = await bench.post(paid_event, signature=signature)
    assert (code, answer["outcome"]) == (200, "applied")


async def test_unknown_namespace_or_integration_is_404(bench: Bench, paid_event: str) -> None:
    secret = bench.secrets[f"{bench.namespace}/stripe"]
    assert (await bench.post(paid_event, integration="nope", secret=secret))[0] == 404
    assert (await bench.post(paid_event, namespace="no-such-ns", secret=secret))[0] == 404
    await _unchanged(bench)


async def test_body_over_the_limit_is_413(bench: Bench, paid_event: str) -> None:
    big = json.dumps({**json.loads(paid_event), "padding": "x" * MIB})
    code, answer = await bench.post(big)
    assert code == 413
    assert "larger than" in answer["reason"]
    await _unchanged(bench)


async def test_signed_body_that_is_not_json_is_400(bench: Bench, paid_event: str) -> None:
    code, answer = await bench.post("this is not json")
    assert (code, answer["outcome"]) == (400, "ignored")
    assert "not a JSON" in answer["reason"]


async def test_answers_carry_only_outcome_and_reason_never_a_trace(bench: Bench, paid_event: str) -> None:
    answers = [
        await bench.post(paid_event, unsigned=True),
        await bench.post(paid_event, signature="t=x,v1=zz"),
        await bench.post("\xff not json"),
        await bench.post(paid_event, integration="nope", secret="whsec_x0000000000"),
        await bench.post(paid_event),
    ]
    for _, answer in answers:
        assert set(answer) <= {"outcome", "eventId", "invoice", "reason"}
        assert "Traceback" not in json.dumps(answer)


# The delivery record is flushed every interval (a read-modify-write of the integration's status): keep it out of
# the window, which only the requests themselves should fill. The flush's own reads are not per request.
@pytest.mark.parametrize("settings", [receiver_settings(status_flush_interval=3600)])
async def test_steady_state_reads_nothing_from_kubernetes_per_request(bench: Bench) -> None:
    await bench.integration()
    first = bench.event("customer.created", {"id": "cus_0", "object": "customer"})
    assert (await bench.send(first))[0] == 200  # loads the integration once
    log = bench.sandbox.emulator.request_log
    before = len(log)
    for index in range(20):
        code, answer = await bench.send(bench.event("customer.created", {"id": f"cus_{index}", "object": "customer"}))
        assert (code, answer["outcome"]) == (200, "ignored")
    reads = [path for method, path, _ in list(log)[before:] if method == "GET"
             and ("/stripeintegrations/" in path or "/secrets/" in path)]
    assert reads == []


async def test_chunked_body_over_the_limit_is_413(bench: Bench, paid_event: str) -> None:
    async def chunks():  # no Content-Length: the limit applies while reading
        for _ in range(17):
            yield b"x" * 65536

    async with bench.http.post(bench.running.webhook_url(bench.namespace, "stripe"), data=chunks(),
                               headers={"Stripe-Signature": "t=1,v1=00"}) as resp:
        assert resp.status == 413
    await _unchanged(bench)


async def test_large_body_under_the_limit_is_verified_and_processed(bench: Bench, paid_event: str) -> None:
    big = json.dumps({**json.loads(paid_event), "padding": "x" * (MIB - 4096)})
    code, answer = await bench.post(big)
    assert (code, answer["outcome"]) == (200, "applied")


async def test_large_well_formed_event_with_a_bad_signature_is_rejected(bench: Bench, paid_event: str) -> None:
    """Bodies above OFFLOAD_BYTES are verified in a worker thread: that path checks the signature too."""
    big = json.dumps({**json.loads(paid_event), "padding": "x" * (MIB - 4096)})
    assert len(big.encode()) > OFFLOAD_BYTES
    code, answer = await bench.post(big, secret="whsec_someoneelsessecret0000000000")
    assert (code, answer["outcome"]) == (400, "signature_failed")
    assert "didn't match the stored webhook secret" in answer["reason"]
    await _unchanged(bench)
