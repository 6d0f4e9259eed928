"""Reconciling a StripeIntegration: verify the key, publish the webhook URL, manage the webhook endpoint.

``reconcile_integration`` does the I/O through injected dependencies and returns a ``Decision`` (status to
write, Events to post, whether to retry); the ``build_*``/``*_drift`` functions of the other modules are pure.
"""

from __future__ import annotations

import datetime as dt

import stripe

from fluxrate import api_versions, webhook_url
from fluxrate import conditions as cond
from fluxrate.decision import Decision, Event
from fluxrate.operator.integrations.endpoints import webhook_secret
from fluxrate.operator.integrations.keys import client_for_disconnect, verified_client
from fluxrate.operator.integrations.objects import IntegrationObject, Overlap, SecretReader, Stop
from fluxrate.operator.integrations.secrets import (
    SECRETS_WATCHED,
    ReferencedSecrets,
    build_secrets_watched,
    secrets_watched_events,
)
from fluxrate.operator.integrations.subscriptions import MISSING_EVENTS
from fluxrate.operator.stripe_clients import StripeClients
from fluxrate.stripe_errors import is_auth_error, is_not_found


async def reconcile_integration(
    obj: IntegrationObject, kube: SecretReader, clients: StripeClients, public_base_url: str,
    retry_delay: float = 10.0, *, endpoint_overlap: float = 3600.0, moment: dt.datetime | None = None,
) -> Decision:
    out = Decision(changes={})
    url = webhook_url(public_base_url, obj.namespace, obj.name)
    out.changes["webhookURL"] = url
    out.changes["observedGeneration"] = obj.generation
    others: list[cond.Condition] = []
    # Recomputed here from what the receiver recorded, so the receiver's condition survives the operator's writes.
    version_condition = api_versions.condition(
        (obj.status.get("deliveries") or {}).get("apiVersions"), managed=obj.spec.webhook_endpoint.managed, url=url,
        now=moment,
    )
    if version_condition is not None:
        others.append(version_condition)
    secrets = ReferencedSecrets(kube, obj.namespace)
    try:
        entry = await verified_client(obj, secrets, clients, out, others, retry_delay)
        await webhook_secret(obj, kube, secrets, entry, url, out, others, retry_delay,
                              Overlap(endpoint_overlap, moment or cond.now()))
    except Stop as stop:
        ready = cond.Condition(cond.READY, stop.status, stop.reason, stop.message)
        if stop.event:
            out.events.append(stop.event)
        out.retry_after = stop.retry_after
        out.permanent = stop.retry_after is None
        unwatched = _secrets_watched(obj, secrets, out, others)
        out.changes["conditions"] = cond.merge(cond.with_kstatus(
            obj.status.get("conditions"), ready, others, generation=obj.generation,
            stalled=out.permanent, reconciling=not out.permanent,
        ), [], generation=None, remove=unwatched)
        entry = clients.get(obj.namespace, obj.name)
        if entry is not None:
            entry.ready = False
        return out

    entry.active, entry.spec = obj.spec.active, obj.spec
    if obj.spec.active:
        webhook_ok = any(c.type == "WebhookSecretConfigured" and c.status == "True" for c in others)
        message = f"Connected to Stripe account {entry.account_id} in {entry.mode} mode."
        if not webhook_ok:
            message += " Payments are confirmed by polling Stripe until the webhook signing secret is configured."
        ready = cond.Condition(cond.READY, "True", "Connected", message)
    else:
        ready = cond.Condition(
            cond.READY, "False", "Disabled",
            "spec.active is false: no new payment links are created; payments for links already sent are still "
            "recorded. Set spec.active: true to resume.",
        )
    previous_ready = cond.get(obj.status.get("conditions"), cond.READY)
    if ready.status == "True" and not (previous_ready and previous_ready.get("reason") == "Connected"):
        out.events.append(Event("Normal", "Connected", message))
    entry.ready = True
    unwatched = _secrets_watched(obj, secrets, out, others)
    out.changes["conditions"] = cond.merge(cond.with_kstatus(
        obj.status.get("conditions"), ready, others, generation=obj.generation
    ), [], generation=None, remove=unwatched)
    return out


def _secrets_watched(
    obj: IntegrationObject, secrets: ReferencedSecrets, out: Decision, others: list[cond.Condition]
) -> list[str]:
    """Adds ``SecretsWatched`` (and its Warning, once) to the outcome; the conditions to remove (``SecretsWatched``
    when no Secret was read, ``MissingEvents`` when the endpoint is managed)."""
    watched = build_secrets_watched(obj.namespace, secrets.labelled)
    out.events.extend(secrets_watched_events(cond.get(obj.status.get("conditions"), SECRETS_WATCHED), watched))
    # MissingEvents is about an endpoint made by hand: a managed one is kept complete by fluxrate
    stale = [MISSING_EVENTS] if obj.spec.webhook_endpoint.managed else []
    if watched is None:
        return [SECRETS_WATCHED, *stale]
    others.append(watched)
    return stale


async def disconnect_integration(obj: IntegrationObject, clients: StripeClients, kube: SecretReader) -> list[Event]:
    """Delete the managed endpoint, and one still retiring (tolerating them gone), and nothing else in Stripe."""
    events: list[Event] = []
    retiring = (obj.status.get("retiringWebhookEndpoint") or {}).get("id")
    endpoint_ids = [e for e in (obj.status.get("webhookEndpointId"), retiring) if e]
    if endpoint_ids:
        entry = await client_for_disconnect(obj, clients, kube)
        if entry is None:
            return [Event("Warning", "EndpointNotDeleted",
                          f"No usable key to delete webhook endpoint {', '.join(endpoint_ids)}: delete it in the "
                          "Stripe Dashboard.")]
        for endpoint_id in endpoint_ids:
            try:
                await entry.call(lambda c, e=endpoint_id: c.v1.webhook_endpoints.delete_async(e))
                events.append(Event("Normal", "EndpointDeleted", f"Deleted Stripe webhook endpoint {endpoint_id}."))
            except stripe.StripeError as exc:
                if is_auth_error(exc):
                    events.append(Event("Warning", "EndpointNotDeleted",
                                        f"Stripe rejected the key, so webhook endpoint {endpoint_id} could not be "
                                        "deleted: delete it in the Stripe Dashboard."))
                elif not is_not_found(exc):
                    raise
    await clients.forget(obj.namespace, obj.name)
    events.append(Event("Normal", "Disconnected", f"StripeIntegration {obj.namespace}/{obj.name} disconnected."))
    return events
