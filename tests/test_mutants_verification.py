"""Tests that kill mutants `make mutate` found surviving in fluxrate/webhook_receiver/verification.py
(docs/testing.md)."""

from __future__ import annotations

import dataclasses
import typing

import pytest
import stripe

from fluxrate.webhook_receiver import verification
from fluxrate.webhook_receiver.verification import SignatureRejected, verify

NOW = 1_800_000_000
SECRET = "whsec_oldoldoldoldoldoldold"
BODY = b'{"id": "evt_1", "type": "checkout.session.completed"}'


def _sign(timestamp: int = NOW) -> str:
    return stripe.WebhookSignature.generate_signature_header(BODY.decode(), SECRET, timestamp=timestamp)


def _problem(header: str) -> str:
    with pytest.raises(SignatureRejected) as caught:
        verify(BODY, header, (SECRET,), tolerance=300, now=NOW)
    return caught.value.problem


def test_a_signature_from_slightly_ahead_of_this_clock_verifies() -> None:
    assert verify(BODY, _sign(NOW + 100), (SECRET,), tolerance=300, now=NOW).timestamp == NOW + 100
    assert verify(BODY, _sign(NOW), (SECRET,), tolerance=300, now=NOW).timestamp == NOW


def test_entries_other_than_t_and_v1_are_ignored_as_the_stripe_sdk_does() -> None:
    for header in (f"junk,{_sign()}", f"{_sign()},foo=bar", f"a=1,{_sign()},zz=2,v0=abc"):
        assert verify(BODY, header, (SECRET,), tolerance=300, now=NOW).secret_index == 0


@pytest.mark.parametrize("scheme", ["v0", "v2", "zz", "a"])
def test_a_header_without_a_v1_signature_is_malformed(scheme: str) -> None:
    signature = _sign().split("v1=")[1]
    assert _problem(f"t={NOW},{scheme}={signature}") == "malformed"
    assert _problem(f"t={NOW},v1=") == "malformed"


def test_the_tolerance_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        verify(BODY, _sign(), (SECRET,), 300, NOW)  # type: ignore[misc]


def test_a_verification_cannot_be_changed() -> None:
    verified = verify(BODY, _sign(), (SECRET,), tolerance=300, now=NOW)
    with pytest.raises(dataclasses.FrozenInstanceError):
        verified.secret_index = 1  # type: ignore[misc]


def test_the_timestamp_message_without_a_tolerance_says_zero() -> None:
    assert "tolerance of 0 s" in SignatureRejected("timestamp").message


def test_the_type_hints_resolve() -> None:
    """Annotations are strings here (``from __future__ import annotations``); tools that read them at run time
    need them to evaluate."""
    for function in (verify, verification.parse_timestamp, SignatureRejected.__init__):
        assert typing.get_type_hints(function)
