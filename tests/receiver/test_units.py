"""Pure parts of the receiver: signature verification, delivery status merging, the applied-event memory."""

from __future__ import annotations

import pytest
import stripe

from fluxrate.kube import ObjectRef
from fluxrate.webhook_receiver.dedupe import RecentEvents
from fluxrate.webhook_receiver.deliveries import RECENT_LIMIT, DeliveryRecord, Pending, merge_deliveries
from fluxrate.webhook_receiver.verification import SignatureRejected, verify

NOW = 1_800_000_000
OLD, NEW = "whsec_oldoldoldoldoldoldold", "whsec_newnewnewnewnewnewnew"
BODY = b'{"id": "evt_1", "type": "checkout.session.completed"}'


def _sign(secret: str, timestamp: int = NOW, body: bytes = BODY) -> str:
    return stripe.WebhookSignature.generate_signature_header(body.decode(), secret, timestamp=timestamp)


def _problem(header: str | None, secrets: tuple[str, ...] = (OLD,), body: bytes = BODY, now: float = NOW) -> str:
    with pytest.raises(SignatureRejected) as caught:
        verify(body, header, secrets, tolerance=300, now=now)
    return caught.value.problem


def test_every_secret_of_the_overlap_verifies() -> None:
    assert verify(BODY, _sign(OLD), (NEW, OLD), tolerance=300, now=NOW).secret_index == 1
    assert verify(BODY, _sign(NEW), (NEW, OLD), tolerance=300, now=NOW).secret_index == 0
    both = f"{_sign(NEW)},v1={_sign(OLD).split('v1=')[1]}"  # Stripe signs with both during its roll
    assert verify(BODY, both, (OLD,), tolerance=300, now=NOW).secret_index == 0


def test_each_rejection_names_its_cause() -> None:
    assert _problem(None) == "missing"
    assert _problem("  ") == "missing"
    assert _problem("garbage") == "malformed"
    assert _problem("t=abc,v1=00") == "malformed"
    assert _problem(f"t={NOW}") == "malformed"
    assert _problem(_sign(OLD), secrets=()) == "no_secret"
    assert _problem(_sign(NEW)) == "mismatch"
    assert _problem(_sign(OLD), body=BODY + b" ") == "mismatch"
    assert _problem(_sign(OLD), body=b"\xff") == "mismatch"  # not UTF-8: Stripe never signed it


def test_tolerance_applies_in_both_directions() -> None:
    assert verify(BODY, _sign(OLD, NOW - 300), (OLD,), tolerance=300, now=NOW).timestamp == NOW - 300
    assert _problem(_sign(OLD, NOW - 301)) == "timestamp"
    assert _problem(_sign(OLD, NOW + 301)) == "timestamp"
    assert _problem(_sign(NEW, NOW - 3000)) == "mismatch"  # a wrong secret is reported as such, not as skew


def test_messages_follow_the_guides_troubleshooting_and_hold_no_secret() -> None:
    mismatch = SignatureRejected("mismatch").message
    assert "whsec_" in mismatch and "endpoint URL" in mismatch and "exact URL" in mismatch
    assert "clock" in SignatureRejected("timestamp", 300).message
    for problem in ("missing", "malformed", "no_secret", "mismatch", "timestamp"):
        assert OLD not in SignatureRejected(problem).message  # type: ignore[arg-type]


def _record(index: int, outcome: str = "applied") -> DeliveryRecord:
    return DeliveryRecord(outcome=outcome, time=f"2026-11-27T10:00:{index:02d}Z", event_id=f"evt_{index}",
                          type="payment_intent.succeeded")


def test_merge_adds_counts_and_puts_the_newest_first() -> None:
    stored = {"counts": {"applied": 5, "error": 1}, "lastDeliveryTime": "2026-11-27T09:00:00Z",
              "recent": [{"outcome": "applied", "time": "2026-11-27T09:00:00Z", "eventId": "evt_old"}]}
    pending = Pending()
    pending.add(_record(1))
    pending.add(_record(2, "duplicate"))
    merged = merge_deliveries(stored, pending)
    assert merged["counts"] == {"applied": 6, "duplicate": 1, "ignored": 0, "unmatched": 0, "signature_failed": 0,
                                "error": 1}
    assert [r["eventId"] for r in merged["recent"]] == ["evt_2", "evt_1", "evt_old"]
    assert merged["lastDeliveryTime"] == "2026-11-27T10:00:02Z"


def test_recent_deliveries_stay_bounded() -> None:
    pending = Pending()
    for index in range(60):
        pending.add(_record(index % 60))
    merged = merge_deliveries({"recent": [{"outcome": "applied", "time": "t"}] * RECENT_LIMIT}, pending)
    assert len(merged["recent"]) == RECENT_LIMIT
    assert merged["counts"]["applied"] == 60
    assert merged["recent"][0]["eventId"] == "evt_59"


def test_a_failed_batch_is_put_back_in_front() -> None:
    failed, newer = Pending(), Pending()
    failed.add(_record(1))
    newer.add(_record(2, "ignored"))
    newer.absorb(failed)
    assert newer.counts == {"applied": 1, "ignored": 1}
    assert [r.event_id for r in newer.recent] == ["evt_1", "evt_2"]


def test_applied_event_memory_is_bounded_and_keyed_by_integration() -> None:
    recent = RecentEvents(capacity=3)
    ref = ObjectRef("Invoice", "ns", "inv-1")
    recent.add("ns", "stripe", "evt_1", ref)
    assert recent.get("ns", "stripe", "evt_1") == (True, ref)
    assert recent.get("ns", "other", "evt_1") == (False, None)
    for index in range(2, 5):
        recent.add("ns", "stripe", f"evt_{index}", None)
    assert len(recent) == 3
    assert recent.get("ns", "stripe", "evt_1") == (False, None)
