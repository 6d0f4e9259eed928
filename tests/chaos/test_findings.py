"""Product bugs the chaos suite found, each pinned by a focused test."""

from __future__ import annotations

from fluxrate.webhook_receiver.processing import parse_event


def test_a_deeply_nested_body_is_not_an_event_rather_than_an_internal_error() -> None:
    """Found by the hostile-input scenario: a validly signed body of 100 000 nested arrays made ``json.loads``
    raise RecursionError, which the receiver answered with a 500 (Stripe would redeliver it for days)."""
    depth = 100_000
    assert parse_event(b"[" * depth + b"]" * depth) is None
    assert parse_event(b'{"id": "evt_1", "type": "x", "data": ' + b"[" * depth + b"]" * depth + b"}") is None
