"""Tests that kill mutants `make mutate` found surviving in fluxrate/stripe_keys.py (docs/testing.md)."""

import dataclasses

import pytest

from fluxrate.stripe_keys import parse_secret_key

FAKE = "abcdefgh12345678"


def test_a_parsed_key_cannot_be_changed_and_can_be_a_dict_key() -> None:
    key = parse_secret_key("sk_test_" + FAKE, 'Secret "s" key "k"')
    with pytest.raises(dataclasses.FrozenInstanceError):
        key.value = "sk_test_other"  # type: ignore[misc]
    assert {key: 1}[parse_secret_key("sk_test_" + FAKE, "elsewhere")] == 1
