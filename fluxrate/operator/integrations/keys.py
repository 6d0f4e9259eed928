"""Verifying an integration's Stripe key: read it from its Secret, ask Stripe whose account it is, keep its client."""

from __future__ import annotations

from typing import Any

import stripe

from fluxrate import API_GROUP
from fluxrate import conditions as cond
from fluxrate.decision import Decision, Event
from fluxrate.operator.integrations.objects import IntegrationObject, SecretReader, Stop
from fluxrate.operator.integrations.secrets import ReferencedSecrets, label_command
from fluxrate.operator.stripe_clients import IntegrationClient, StripeClients
from fluxrate.stripe_api import close_stripe_client
from fluxrate.stripe_errors import is_auth_error, is_retryable
from fluxrate.stripe_keys import KeyProblem, SecretKey, parse_secret_key

ACCEPT_ACCOUNT_ANNOTATION = f"{API_GROUP}/accept-account"


async def verified_client(
    obj: IntegrationObject, secrets: ReferencedSecrets, clients: StripeClients, out: Decision,
    others: list[cond.Condition], retry_delay: float,
) -> IntegrationClient:
    """The client of the key in the integration's Secret, once Stripe has said whose account it is."""
    ref = obj.spec.secret_key_ref
    where = f'Secret "{ref.name}" key "{ref.key}"'
    key = await _read_key(obj, secrets, others)
    entry, rotated = await clients.for_key(obj.namespace, obj.name, key)
    account = await _account(entry, where, others, retry_delay)
    account_id = str(account.get("id"))
    changed = account_change(obj, where, account_id, key.mode)
    if changed is not None:
        others.append(cond.Condition("SecretKeyValid", "False", "AccountChanged", changed))
        await close_unadopted(clients, obj, entry)
        raise Stop("AccountChanged", changed, event=Event("Warning", "AccountChanged", changed))

    entry.account_id = account_id
    previous = clients.adopt(obj.namespace, obj.name, entry)
    if previous is not None:
        await close_stripe_client(previous.client)
    if rotated:
        out.events.append(Event("Normal", "KeyRotated", f"Now using the new key from {where} ({key.mode} mode)."))
    out.changes["mode"] = key.mode
    out.changes["accountId"] = account_id
    others.append(cond.Condition("SecretKeyValid", "True", "Verified", f"The key in {where} works for {account_id}."))
    return entry


async def _read_key(obj: IntegrationObject, secrets: ReferencedSecrets, others: list[cond.Condition]) -> SecretKey:
    ref = obj.spec.secret_key_ref

    def key_problem(reason: str, message: str) -> Stop:
        others.append(cond.Condition("SecretKeyValid", "False", reason, message))
        return Stop(reason, message)

    data = await secrets.read(ref.name)
    if data is None:
        raise key_problem(
            "SecretNotFound",
            f'Secret "{ref.name}" not found in namespace "{obj.namespace}": create it with '
            f"kubectl -n {obj.namespace} create secret generic {ref.name} --from-literal={ref.key}=sk_live_... && "
            f"{label_command(obj.namespace, [ref.name])} (labelled, it is noticed at once)",
        )
    if ref.key not in data:
        present = ", ".join(sorted(data)) or "none"
        raise key_problem(
            "SecretKeyNotFound",
            f'Secret "{ref.name}" has no key "{ref.key}" (keys present: {present}): add the Stripe secret key '
            f"under {ref.key}, or point spec.secretKeyRef.key at the right key",
        )
    try:
        return parse_secret_key(data[ref.key], f'Secret "{ref.name}" key "{ref.key}"')
    except KeyProblem as problem:
        raise key_problem(problem.reason, str(problem)) from None


async def _account(
    entry: IntegrationClient, where: str, others: list[cond.Condition], retry_delay: float
) -> dict[str, Any]:
    """Stripe's account of the key; a ``Stop`` when Stripe refuses the key or cannot be reached."""
    try:
        return dict((await entry.call(lambda c: c.v1.accounts.retrieve_current_async())).to_dict())
    except stripe.StripeError as exc:
        if is_auth_error(exc):
            message = (
                f"Stripe rejected the key in {where} (401): it was revoked, rolled or mistyped. Paste a current key "
                "from Stripe Dashboard → Developers → API keys into the Secret."
            )
            others.append(cond.Condition("SecretKeyValid", "False", "InvalidSecretKey", message))
            raise Stop("InvalidSecretKey", message, event=Event("Warning", "InvalidKey", message)) from None
        if isinstance(exc, stripe.PermissionError):
            message = (
                f"The restricted key in {where} lacks a permission fluxrate needs: grant it write access to "
                "Payment Links and Webhook Endpoints and read access to Checkout Sessions, PaymentIntents and "
                "Charges (receipts) and Events (missed-webhook recovery)."
            )
            others.append(cond.Condition("SecretKeyValid", "False", "KeyPermissionDenied", message))
            raise Stop("KeyPermissionDenied", message, event=Event("Warning", "InvalidKey", message)) from None
        if is_retryable(exc):
            raise Stop(
                "StripeUnavailable",
                f"Stripe could not be reached to verify the key ({type(exc).__name__}); retrying with backoff.",
                status="Unknown", retry_after=retry_delay,
            ) from None
        raise


def account_change(obj: IntegrationObject, where: str, account_id: str, mode: str) -> str | None:
    """Why the key may not be used: it belongs to another account (or mode) than the one connected, and the change
    was not accepted (the annotation). None when it may."""
    previous_account, previous_mode = obj.status.get("accountId"), obj.status.get("mode")
    accepted = obj.annotations.get(ACCEPT_ACCOUNT_ANNOTATION)
    if not previous_account or (account_id, mode) == (previous_account, previous_mode) or accepted == account_id:
        return None
    return (
        f"The key in {where} belongs to Stripe account {account_id} ({mode} mode), but this integration is "
        f"connected to {previous_account} ({previous_mode} mode); fluxrate does not switch silently, since "
        "links and webhooks of the old account would be orphaned. Restore the previous key, or accept the change: "
        f"kubectl -n {obj.namespace} annotate stripeintegration {obj.name} "
        f"{ACCEPT_ACCOUNT_ANNOTATION}={account_id} --overwrite"
    )


async def close_unadopted(clients: StripeClients, obj: IntegrationObject, entry: IntegrationClient) -> None:
    if clients.get(obj.namespace, obj.name) is not entry:
        await close_stripe_client(entry.client)


async def client_for_disconnect(
    obj: IntegrationObject, clients: StripeClients, kube: SecretReader
) -> IntegrationClient | None:
    """The client of the key in the Secret now; the one this process used last only when the Secret is gone.

    A cached client may hold a key rotated since (an HA standby that took over, or an unlabelled Secret changed
    between resyncs), and Stripe refuses a revoked key: the endpoint would be left behind in Stripe.
    """
    ref = obj.spec.secret_key_ref
    data = await kube.read_secret(obj.namespace, ref.name) or {}
    try:
        key = parse_secret_key(data.get(ref.key, ""), f'Secret "{ref.name}" key "{ref.key}"')
    except KeyProblem:
        return clients.get(obj.namespace, obj.name)
    entry, _ = await clients.for_key(obj.namespace, obj.name, key)
    replaced = clients.adopt(obj.namespace, obj.name, entry)
    if replaced is not None:
        await close_stripe_client(replaced.client)
    return entry
