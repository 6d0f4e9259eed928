"""What kind of Stripe key or signing secret a user pasted, and what to tell them when it is the wrong one."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Mode = Literal["live", "test"]

# The key under which a managed webhook endpoint's signing secret is kept in the Secret the operator owns;
# the receiver reads it from there.
MANAGED_SIGNING_SECRET_KEY = "signing-secret"

_SECRET_KEY = re.compile(r"^(sk|rk)_(live|test)_[A-Za-z0-9]{8,}$")
_WEBHOOK_SECRET = re.compile(r"^whsec_[A-Za-z0-9+/=]{8,}$")


class KeyProblem(ValueError):
    """The value is not a usable secret key; ``reason`` is the condition reason, the message says what to do."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class SecretKey:
    value: str
    kind: Literal["secret", "restricted"]
    mode: Mode

    def __repr__(self) -> str:  # never show the key itself
        return f"SecretKey(kind={self.kind!r}, mode={self.mode!r})"

    __str__ = __repr__


def parse_secret_key(raw: str, where: str) -> SecretKey:
    """``where`` names the Secret and key for the message, e.g. ``Secret "stripe-credentials" key "secret-key"``."""
    value = raw.strip()
    match = _SECRET_KEY.match(value)
    if match:
        return SecretKey(value=value, kind="secret" if match.group(1) == "sk" else "restricted", mode=match.group(2))
    if value.startswith("pk_"):
        raise KeyProblem(
            "PublishableKey",
            f"{where} holds a publishable key (pk_...), which cannot create payment links: paste the Secret key "
            "(sk_live_... or sk_test_...) or a restricted key (rk_...) from Stripe Dashboard → Developers → API keys",
        )
    if value.startswith("whsec_"):
        raise KeyProblem(
            "WrongKeyType",
            f"{where} holds a webhook signing secret (whsec_...): put it in webhookSecretRef, and paste the Secret "
            "key (sk_live_... or sk_test_...) here",
        )
    if not value:
        raise KeyProblem("SecretKeyEmpty", f"{where} is empty: paste the Stripe secret key (sk_live_.../sk_test_...)")
    raise KeyProblem(
        "InvalidKeyFormat",
        f"{where} does not hold a Stripe secret key: expected sk_live_..., sk_test_..., rk_live_... or rk_test_...",
    )


def parse_webhook_secrets(raw: str, where: str) -> tuple[str, ...]:
    """One signing secret per line (several during Stripe's roll-secret overlap); blank lines are ignored."""
    secrets = tuple(line.strip() for line in raw.splitlines() if line.strip())
    if not secrets:
        raise KeyProblem("WebhookSecretEmpty", f"{where} is empty: paste the endpoint's Signing secret (whsec_...)")
    for index, secret in enumerate(secrets, start=1):
        if not _WEBHOOK_SECRET.match(secret):
            hint = (
                " (that is the endpoint URL, not its secret)" if secret.startswith("http")
                else " (that is an API key, not the signing secret)" if re.match(r"^(sk|rk|pk)_", secret)
                else ""
            )
            raise KeyProblem(
                "InvalidWebhookSecret",
                f"{where} line {index} is not a Stripe signing secret{hint}: copy the Signing secret (whsec_...) "
                "from Stripe Dashboard → Developers → Webhooks → your endpoint",
            )
    return secrets
