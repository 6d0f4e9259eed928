"""The webhook endpoint of an integration: the one fluxrate manages in Stripe (registered, repaired, replaced for
its API version with an overlap, deleted), or the signing secret of one the user made (and, in ``subscriptions``,
whether it delivers the events fluxrate needs)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import stripe

from fluxrate import api_versions
from fluxrate import conditions as cond
from fluxrate.decision import Decision, Event
from fluxrate.models import endpoint_events
from fluxrate.operator.integrations.objects import IntegrationObject, Overlap, SecretReader, Stop
from fluxrate.operator.integrations.secrets import (
    MANAGED_BY_LABELS,
    ReferencedSecrets,
    is_watched,
    label_command,
    owned_secret_name,
    secret_lines,
)
from fluxrate.operator.integrations.subscriptions import subscription_condition
from fluxrate.operator.stripe_clients import IntegrationClient
from fluxrate.stripe_errors import is_endpoint_limit, is_not_found, is_retryable, user_message
from fluxrate.stripe_keys import MANAGED_SIGNING_SECRET_KEY, KeyProblem, parse_webhook_secrets


def build_webhook_endpoint_params(
    url: str, events: Sequence[str], namespace: str, name: str, uid: str, api_version: str = api_versions.SDK_VERSION,
) -> dict[str, Any]:
    """Events are rendered in ``api_version`` (the SDK's), not the account's default, which may be any version."""
    return {
        "url": url,
        "enabled_events": list(events),
        "api_version": api_version,
        "description": f"fluxrate: StripeIntegration {namespace}/{name}",
        "metadata": {"fluxrate_namespace": namespace, "fluxrate_integration": name, "fluxrate_uid": uid},
    }


def endpoint_drift(endpoint: Mapping[str, Any], url: str, events: Sequence[str]) -> dict[str, Any]:
    """Update params that bring ``endpoint`` back to what the integration wants; empty when nothing drifted."""
    update: dict[str, Any] = {}
    if endpoint.get("url") != url:
        update["url"] = url
    if sorted(endpoint.get("enabled_events") or []) != sorted(events):
        update["enabled_events"] = list(events)
    if endpoint.get("status") == "disabled":
        update["disabled"] = False
    return update


def needs_new_version(endpoint: Mapping[str, Any], api_version: str = api_versions.SDK_VERSION) -> bool:
    """Stripe cannot change an endpoint's API version (only create sets it): another version means a replacement."""
    return endpoint.get("api_version") != api_version


def overlap_over(retiring: Mapping[str, Any], moment: dt.datetime, overlap: float) -> bool:
    since = retiring.get("since")
    try:
        started = dt.datetime.fromisoformat(str(since).replace("Z", "+00:00"))
    except ValueError:
        return True
    return (moment - started).total_seconds() >= overlap


def endpoint_idempotency_key(uid: str, replaces: str | None) -> str:
    """Stable per endpoint generation: a crash after Stripe created it replays the same endpoint (and secret)."""
    return f"fluxrate-endpoint-{uid}-{replaces or 'initial'}"


def next_step_for_webhook_secret(url: str, events: Sequence[str], namespace: str, name: str) -> str:
    return (
        f"Add the endpoint {url} in Stripe Dashboard → Developers → Webhooks with the events "
        f"{', '.join(events)}; then put its Signing secret (whsec_...) into a Secret and reference it, e.g. "
        f"kubectl -n {namespace} create secret generic {name}-webhook --from-literal=signing-secret=whsec_... && "
        f"{label_command(namespace, [f'{name}-webhook'])} && "
        f"kubectl -n {namespace} patch stripeintegration {name} --type merge -p "
        f"'{{\"spec\":{{\"webhookSecretRef\":{{\"name\":\"{name}-webhook\",\"key\":\"signing-secret\"}}}}}}'. "
        "Or set spec.webhookEndpoint.managed: true and fluxrate registers the endpoint itself."
    )


async def webhook_secret(
    obj: IntegrationObject, kube: SecretReader, secrets: ReferencedSecrets, entry: IntegrationClient, url: str,
    out: Decision, others: list[cond.Condition], retry_delay: float, overlap: Overlap,
) -> None:
    events = endpoint_events(obj.spec.webhook_endpoint.enabled_events)
    if obj.spec.webhook_endpoint.managed:
        await managed_endpoint(obj, kube, entry, url, out, others, retry_delay, overlap)
        return
    retiring = obj.status.get("retiringWebhookEndpoint") or {}
    if retiring.get("id"):
        await delete_endpoint(entry, retiring["id"], retry_delay)
        out.changes["retiringWebhookEndpoint"] = None
        out.events.append(Event("Normal", "EndpointDeleted", f"Deleted managed webhook endpoint {retiring['id']}."))
    if obj.status.get("webhookEndpointId"):
        # No longer managed: remove the endpoint fluxrate created, so it does not deliver with a secret nobody has.
        endpoint_id = obj.status["webhookEndpointId"]
        await delete_endpoint(entry, endpoint_id, retry_delay)
        out.changes["webhookEndpointId"] = None
        out.changes["webhookEndpointApiVersion"] = None
        out.changes["webhookSecretName"] = None
        out.events.append(Event("Normal", "EndpointDeleted", f"Deleted managed webhook endpoint {endpoint_id}."))
    # An endpoint made by hand (after deleting the managed one, which could deliver to the same URL): does it
    # deliver every event type fluxrate needs?
    others.append(await subscription_condition(entry, url, events))
    ref = obj.spec.webhook_secret_ref
    if ref is None:
        others.append(cond.Condition(
            "WebhookSecretConfigured", "False", "WaitingForWebhookSecret",
            next_step_for_webhook_secret(url, events, obj.namespace, obj.name),
        ))
        return
    where = f'Secret "{ref.name}" key "{ref.key}"'
    data = await secrets.read(ref.name)
    if data is None or ref.key not in data:
        missing = f'Secret "{ref.name}" not found' if data is None else f'Secret "{ref.name}" has no key "{ref.key}"'
        others.append(cond.Condition(
            "WebhookSecretConfigured", "False", "WebhookSecretNotFound",
            f"{missing} in namespace {obj.namespace}: put the endpoint's Signing secret (whsec_...) there, and "
            f"label the Secret so that it is noticed at once: {label_command(obj.namespace, [ref.name])}",
        ))
        return
    try:
        secrets = parse_webhook_secrets(data[ref.key], where)
    except KeyProblem as problem:
        others.append(cond.Condition("WebhookSecretConfigured", "False", problem.reason, str(problem)))
        return
    count = f"{len(secrets)} signing secrets (rotation overlap)" if len(secrets) > 1 else "a signing secret"
    others.append(cond.Condition("WebhookSecretConfigured", "True", "WebhookSecretFound", f"{where} holds {count}."))


async def delete_endpoint(entry: IntegrationClient, endpoint_id: str, retry_delay: float) -> None:
    """Delete an endpoint, tolerating one already gone."""
    try:
        await entry.call(lambda c: c.v1.webhook_endpoints.delete_async(endpoint_id))
    except stripe.StripeError as exc:
        if not is_not_found(exc):
            raise Stop("StripeUnavailable", f"Could not delete the managed endpoint {endpoint_id}; retrying.",
                        status="Unknown", retry_after=retry_delay) from None


async def retire_endpoint(
    obj: IntegrationObject, kube: SecretReader, entry: IntegrationClient, out: Decision, retry_delay: float,
    overlap: Overlap, *, now: bool = False,
) -> bool:
    """End the overlap of a replaced endpoint once it is over (or ``now``): delete it in Stripe, then drop its
    signing secret from the Secret. Returns whether an endpoint is still retiring."""
    retiring = obj.status.get("retiringWebhookEndpoint") or {}
    if not retiring.get("id"):
        return False
    if not now and not overlap_over(retiring, overlap.moment, overlap.seconds):
        return True
    await delete_endpoint(entry, retiring["id"], retry_delay)
    secret_name = owned_secret_name(obj.name)
    stored = await kube.read_secret(obj.namespace, secret_name) or {}
    lines = secret_lines(stored.get(MANAGED_SIGNING_SECRET_KEY))
    if len(lines) > 1:  # the current endpoint's secret is the first line
        await kube.write_owned_secret(obj.ref, secret_name, {MANAGED_SIGNING_SECRET_KEY: lines[0]},
                                      MANAGED_BY_LABELS)
    out.changes["retiringWebhookEndpoint"] = None
    out.events.append(Event("Normal", "EndpointRetired",
                            f"Deleted webhook endpoint {retiring['id']} (API version "
                            f"{retiring.get('apiVersion') or 'account default'}) after the overlap with its "
                            "replacement; its signing secret no longer verifies."))
    return False


class _Current(NamedTuple):
    """What became of the endpoint recorded in the status."""

    kept: bool  # it serves on (repaired if it had drifted)
    replacing: Mapping[str, Any] | None = None  # replaced for its API version, kept for an overlap
    stored_lines: tuple[str, ...] = ()  # the signing secrets stored for it


async def managed_endpoint(
    obj: IntegrationObject, kube: SecretReader, entry: IntegrationClient, url: str, out: Decision,
    others: list[cond.Condition], retry_delay: float, overlap: Overlap,
) -> None:
    # endpoint_events: an integration stored before the after-payment types existed still lists only the payment
    # events (the CRD persisted that default), and its endpoint gets them too
    params = build_webhook_endpoint_params(url, endpoint_events(obj.spec.webhook_endpoint.enabled_events),
                                           obj.namespace, obj.name, obj.uid)
    version = params["api_version"]
    secret_name = owned_secret_name(obj.name)
    current_id: str | None = obj.status.get("webhookEndpointId")
    current = _Current(kept=False)
    try:
        if current_id is not None:
            current = await _keep_current(obj, kube, entry, url, out, retry_delay, overlap, version)
            if current.kept:
                endpoint_ready(others, current_id, secret_name, version)
                return
        created = (await entry.call(lambda c: c.v1.webhook_endpoints.create_async(
            params=params, options={"idempotency_key": endpoint_idempotency_key(obj.uid, current_id)}
        ))).to_dict()
    except stripe.StripeError as exc:
        raise _refused(exc, others, retry_delay) from None
    await _record_created(obj, kube, out, url, overlap, created, current, version)
    endpoint_ready(others, str(created["id"]), secret_name, version)


async def _keep_current(
    obj: IntegrationObject, kube: SecretReader, entry: IntegrationClient, url: str, out: Decision, retry_delay: float,
    overlap: Overlap, version: str,
) -> _Current:
    """Keep the recorded endpoint (repairing its drift), or say it must be created anew or replaced."""
    current_id = obj.status["webhookEndpointId"]
    secret_name = owned_secret_name(obj.name)
    found = await kube.read_secret_and_labels(obj.namespace, secret_name)
    stored, stored_labels = found if found is not None else (None, {})
    try:
        endpoint = (await entry.call(lambda c: c.v1.webhook_endpoints.retrieve_async(current_id))).to_dict()
    except stripe.StripeError as exc:
        if not is_not_found(exc):
            raise
        return _Current(kept=False)
    if not (stored and stored.get(MANAGED_SIGNING_SECRET_KEY)):
        # The signing secret is only returned on create: without it, replace the endpoint.
        await entry.call(lambda c: c.v1.webhook_endpoints.delete_async(current_id))
        return _Current(kept=False)
    if not is_watched(stored_labels):  # written before Secrets were labelled: label it
        await kube.write_owned_secret(obj.ref, secret_name,
                                      {MANAGED_SIGNING_SECRET_KEY: stored[MANAGED_SIGNING_SECRET_KEY]},
                                      MANAGED_BY_LABELS)
    if needs_new_version(endpoint, version):
        # A second replacement before the first overlap ended: the older endpoint goes now.
        await retire_endpoint(obj, kube, entry, out, retry_delay, overlap, now=True)
        return _Current(kept=False, replacing=endpoint,
                        stored_lines=tuple(secret_lines(stored.get(MANAGED_SIGNING_SECRET_KEY))))
    await retire_endpoint(obj, kube, entry, out, retry_delay, overlap)
    update = endpoint_drift(endpoint, url, endpoint_events(obj.spec.webhook_endpoint.enabled_events))
    if update:
        await entry.call(lambda c: c.v1.webhook_endpoints.update_async(current_id, params=update))
        out.events.append(Event(
            "Normal", "EndpointRepaired",
            f"Webhook endpoint {current_id} had drifted ({', '.join(sorted(update))}); repaired.",
        ))
    return _Current(kept=True)


def _refused(exc: stripe.StripeError, others: list[cond.Condition], retry_delay: float) -> Stop:
    """The ``Stop`` for Stripe's refusal (or unavailability) to manage the endpoint."""
    if is_retryable(exc):
        return Stop("StripeUnavailable", f"Stripe could not be reached to manage the webhook endpoint "
                    f"({type(exc).__name__}); retrying with backoff.", status="Unknown", retry_after=retry_delay)
    message = user_message(exc)
    if is_endpoint_limit(exc):
        reason = "EndpointLimitReached"
        message = (
            f"Stripe refused to create another webhook endpoint: {message}. Stripe allows 16 per account: delete "
            "unused endpoints in Dashboard → Developers → Webhooks, or set webhookEndpoint.managed: false and "
            "reference an existing endpoint's signing secret."
        )
    else:
        reason = "EndpointRejected"
        message = f"Stripe refused the webhook endpoint: {message}"
    others.append(cond.Condition("WebhookEndpointReady", "False", reason, message))
    others.append(cond.Condition("WebhookSecretConfigured", "False", reason, message))
    return Stop(reason, message, event=Event("Warning", reason, message))


async def _record_created(
    obj: IntegrationObject, kube: SecretReader, out: Decision, url: str, overlap: Overlap,
    created: Mapping[str, Any], current: _Current, version: str,
) -> None:
    """Store the new endpoint's signing secret (beside the replaced one's, for the overlap) and record it."""
    current_id = obj.status.get("webhookEndpointId")
    secret_name = owned_secret_name(obj.name)
    new_id = str(created["id"])
    lines = [created["secret"]]
    replacing = current.replacing
    if replacing is not None:
        # Both endpoints deliver during the overlap (the receiver dedupes by event id): both secrets verify.
        lines += [line for line in current.stored_lines if line != created["secret"]]
    await kube.write_owned_secret(obj.ref, secret_name, {MANAGED_SIGNING_SECRET_KEY: "\n".join(lines)},
                                  MANAGED_BY_LABELS)
    out.changes["webhookEndpointId"] = new_id
    out.changes["webhookEndpointApiVersion"] = created.get("api_version") or version
    out.changes["webhookSecretName"] = secret_name
    if replacing is not None:
        old_version = replacing.get("api_version")
        out.changes["retiringWebhookEndpoint"] = {"id": current_id, "apiVersion": old_version,
                                                  "since": cond.timestamp(overlap.moment)}
        out.events.append(Event(
            "Normal", "EndpointReplaced",
            f"Webhook endpoint {current_id} renders events in API version {old_version or 'of the account default'}"
            f"; Stripe cannot change that, so {new_id} replaces it with {version}. Both deliver, and both signing "
            f"secrets verify, for {overlap.seconds:g} s; then {current_id} is deleted.",
        ))
    else:
        verb = "EndpointRepaired" if current_id else "EndpointRegistered"
        detail = f"replacing {current_id}" if current_id else f"for {url}"
        out.events.append(Event("Normal", verb, f"Registered Stripe webhook endpoint {new_id} {detail}."))


def endpoint_ready(others: list[cond.Condition], endpoint_id: str, secret_name: str, version: str) -> None:
    others.append(cond.Condition("WebhookEndpointReady", "True", "EndpointRegistered",
                                 f"Stripe webhook endpoint {endpoint_id} delivers to this integration in API "
                                 f"version {version}."))
    others.append(cond.Condition("WebhookSecretConfigured", "True", "ManagedEndpoint",
                                 f'The signing secret of {endpoint_id} is kept in Secret "{secret_name}".'))
