import logging

import pytest

from fluxrate import redact
from fluxrate.stripe_keys import KeyProblem, parse_secret_key, parse_webhook_secrets

WHERE = 'Secret "stripe" key "secret-key"'
FAKE = "abcdefgh12345678"  # joined at run time, so no file holds anything that looks like a live key


@pytest.mark.parametrize(
    ("raw", "kind", "mode"),
    [
        ("sk_test_abcdefgh12345678", "secret", "test"),
        ("sk_live_" + FAKE + "\n", "secret", "live"),
        ("rk_test_abcdefgh12345678", "restricted", "test"),
        ("rk_live_" + FAKE, "restricted", "live"),
    ],
)
def test_accepted_keys(raw: str, kind: str, mode: str) -> None:
    key = parse_secret_key(raw, WHERE)
    assert (key.kind, key.mode) == (kind, mode)
    assert "abcdefgh" not in repr(key) and "abcdefgh" not in str(key)


@pytest.mark.parametrize(
    ("raw", "reason", "hint"),
    [
        ("pk_test_abcdefgh12345678", "PublishableKey", "publishable key"),
        ("whsec_abcdefgh12345678", "WrongKeyType", "webhookSecretRef"),
        ("", "SecretKeyEmpty", "empty"),
        ("hello", "InvalidKeyFormat", "sk_live_"),
    ],
)
def test_rejected_keys_say_which_key_to_paste(raw: str, reason: str, hint: str) -> None:
    with pytest.raises(KeyProblem) as info:
        parse_secret_key(raw, WHERE)
    assert info.value.reason == reason
    assert hint in str(info.value) and WHERE in str(info.value)
    assert "abcdefgh" not in str(info.value)


def test_several_webhook_secrets_one_per_line() -> None:
    assert parse_webhook_secrets("whsec_aaaaaaaaaaaa\n\n whsec_bbbbbbbbbbbb \n", WHERE) == (
        "whsec_aaaaaaaaaaaa",
        "whsec_bbbbbbbbbbbb",
    )


@pytest.mark.parametrize(
    ("raw", "hint"),
    [
        ("https://billing.example.com/api/v1/webhooks/stripe/ns/x", "endpoint URL"),
        ("sk_test_abcdefgh12345678", "API key"),
        ("whsec_aaaaaaaaaaaa\nnonsense", "line 2"),
    ],
)
def test_bad_webhook_secret_explains(raw: str, hint: str) -> None:
    with pytest.raises(KeyProblem, match=hint) as info:
        parse_webhook_secrets(raw, WHERE)
    assert info.value.reason == "InvalidWebhookSecret"
    assert "abcdefgh" not in str(info.value)


def test_redaction_masks_keys_in_log_records(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("fluxrate.test.redact")
    handler = logging.Handler()
    records: list[str] = []
    handler.emit = lambda record: records.append(handler.format(record))  # type: ignore[method-assign]
    logger.addHandler(handler)
    redact.install(logger)
    try:
        logger.warning("got %s and %s", "sk_live_" + FAKE, "whsec_zzzzzzzzzzzz")
        try:
            raise RuntimeError("Invalid API key sk_test_qqqqqqqqqqqq")
        except RuntimeError:
            logger.exception("boom")
    finally:
        logger.removeHandler(handler)
    text = "\n".join(records)
    assert "sk_live_[REDACTED]" in text and "whsec_[REDACTED]" in text
    assert "abcdefgh" not in text and "zzzz" not in text and "qqqq" not in text
