"""The stand-in decodes exactly what the SDK's form encoder sends."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from hypothesis import given
from hypothesis import strategies as st
from stripe._encode import _api_encode

from fluxrate_sandbox.stripe_objects import decode_form, mask_key

# ``metadata`` is always a hash at Stripe, which the encoder cannot tell from a list (``metadata[0]=``): it has a test
# of its own below
keys = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8).filter(lambda k: k != "metadata")
scalars = st.text(min_size=0, max_size=12) | st.integers(-10**6, 10**6).map(str)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, min_size=1, max_size=3) | st.dictionaries(keys, inner, min_size=1, max_size=3),
    max_leaves=12,
)


def _encode(params: dict[str, Any]) -> str:
    body = urlencode(list(_api_encode(params)))
    return body.replace("%5B", "[").replace("%5D", "]")  # as the SDK sends it


@given(st.dictionaries(keys, values, min_size=1, max_size=4))
def test_decode_form_inverts_the_sdk_encoder(params: dict[str, Any]) -> None:
    assert decode_form(_encode(params)) == params


def test_metadata_keys_that_look_like_indexes_stay_a_dict() -> None:
    assert decode_form(_encode({"metadata": {"0": "a", "1": "b"}})) == {"metadata": {"0": "a", "1": "b"}}
    assert decode_form(_encode({"enabled_events": ["a", "b"]})) == {"enabled_events": ["a", "b"]}


def test_mask_key_shows_prefix_and_last_four() -> None:
    assert mask_key("sk_test_abcdefgh1234") == "sk_test_********1234"
    assert mask_key("rk_live_zz") == "rk_live_zz"
