"""Reconciling a StripeIntegration: verify the key, publish the webhook URL, manage the webhook endpoint.

``reconcile_integration`` does the I/O through injected dependencies and returns an ``Outcome`` (status to
write, Events to post, whether to retry); the ``build_*``/``*_drift`` functions are pure.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, Protocol

import stripe

from fluxrate import api_versions, webhook_url
from fluxrate import conditions as cond
from fluxrate.kube import ObjectRef
from fluxrate.models import StripeIntegrationSpec
from fluxrate.operator.stripe_clients import IntegrationClient, StripeClients
from fluxrate.stripe_api import close_stripe_client
from fluxrate.stripe_errors import is_auth_error, is_not_found, is_retryable, user_message
from fluxrate.stripe_keys import MANAGED_SIGNING_SECRET_KEY, KeyProblem, parse_secret_key, parse_webhook_secrets

ACCEPT_ACCOUNT_ANNOTATION = "billing.fluxrate.co/accept-account"
# The label that marks the Secrets fluxrate reads. The operator lists and watches only Secrets carrying it (a
# labelSelector on the request, so the API server sends no others), to notice key and webhook-secret rotation at
# once; a referenced Secret without it still works, but its changes are noticed at the next resync.
WATCH_LABEL = "billing.fluxrate.co/watch"
WATCH_LABEL_VALUE = "true"
WATCH_SELECTOR = f"{WATCH_LABEL}={WATCH_LABEL_VALUE}"
SECRETS_WATCHED = "SecretsWatched"
MANAGED_BY_LABELS = {"app.kubernetes.io/managed-by": "fluxrate", "billing.fluxrate.co/role": "webhook-signing-secret",
                     WATCH_LABEL: WATCH_LABEL_VALUE}

EventType = Literal["Normal", "Warning"]


class Event(NamedTuple):
    """A Kubernetes Event to post; a plain (type, reason, message) tuple like payments.Decision.events."""

    type: EventType
    reason: str
    message: str


@dataclass
class Outcome:
    status: dict[str, Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    retry_after: float | None = None  # temporary trouble: try again
    permanent: bool = False  # needs the user: do not retry until something changes


class SecretReader(Protocol):
    async def read_secret(self, namespace: str, name: str) -> dict[str, str] | None: ...

    async def read_secret_and_labels(
        self, namespace: str, name: str
    ) -> tuple[dict[str, str], dict[str, str]] | None: ...

    async def write_owned_secret(
        self, owner: ObjectRef, name: str, data: Mapping[str, str], labels: Mapping[str, str]
    ) -> None: ...


# --- pure -------------------------------------------------------------------------------------------------


def owned_secret_name(integration: str) -> str:
    return f"{integration[:228]}-webhook-signing"


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


def secret_lines(value: str | None) -> list[str]:
    return [line.strip() for line in (value or "").splitlines() if line.strip()]


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


def is_watched(labels: Mapping[str, str] | None) -> bool:
    """Whether a Secret with these labels is in the operator's (label-selected) watch of Secrets."""
    return (labels or {}).get(WATCH_LABEL) == WATCH_LABEL_VALUE


def label_command(namespace: str, names: Sequence[str]) -> str:
    return f"kubectl label secret {' '.join(names)} {WATCH_SELECTOR} -n {namespace}"


def build_secrets_watched(namespace: str, labelled: Mapping[str, bool]) -> cond.Condition | None:
    """``SecretsWatched`` from the referenced Secrets read (name: carries the watch label); None when none exists.

    Informational: an unlabelled Secret still works (it is read on every reconcile), only its changes wait for the
    next resync. It never makes the integration not-Ready.
    """
    if not labelled:
        return None
    names = ", ".join(f'"{name}"' for name in labelled)
    unlabelled = [name for name, watched in labelled.items() if not watched]
    if not unlabelled:
        many = len(labelled) > 1
        return cond.Condition(
            SECRETS_WATCHED, "True", "SecretsLabelled",
            f"Secret{'s' if many else ''} {names} carr{'y' if many else 'ies'} {WATCH_SELECTOR}: "
            f"{'their' if many else 'its'} changes (key or signing-secret rotation) are noticed at once.",
        )
    which = ", ".join(f'"{name}"' for name in unlabelled)
    plural = len(unlabelled) > 1
    return cond.Condition(
        SECRETS_WATCHED, "False", "SecretNotLabelled",
        f"Secret{'s' if plural else ''} {which} in namespace {namespace} lack{'' if plural else 's'} the label "
        f"{WATCH_SELECTOR}: fluxrate uses {'them' if plural else 'it'}, but notices a change (key or signing-secret "
        f"rotation) only at the next resync. Label {'them' if plural else 'it'}: "
        f"{label_command(namespace, unlabelled)}",
    )


def secrets_watched_events(previous: Mapping[str, Any] | None, current: cond.Condition | None) -> list[Event]:
    """A Warning when Secrets become (or are found) unlabelled, once per change of the message; nothing else."""
    if current is None or current.status != "False":
        return []
    if previous and previous.get("status") == current.status and previous.get("message") == current.message:
        return []
    return [Event("Warning", current.reason, current.message)]


# --- reconcile --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IntegrationObject:
    namespace: str
    name: str
    uid: str
    generation: int
    spec: StripeIntegrationSpec
    status: Mapping[str, Any]
    annotations: Mapping[str, str]

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef(kind="StripeIntegration", namespace=self.namespace, name=self.name, uid=self.uid)


class _ReferencedSecrets:
    """Reads the Secrets an integration references, noting which of them carry the watch label."""

    def __init__(self, kube: SecretReader, namespace: str) -> None:
        self.kube, self.namespace = kube, namespace
        self.labelled: dict[str, bool] = {}

    async def read(self, name: str) -> dict[str, str] | None:
        found = await self.kube.read_secret_and_labels(self.namespace, name)
        if found is None:
            self.labelled.pop(name, None)
            return None
        data, labels = found
        self.labelled[name] = is_watched(labels)
        return data


class _Stop(Exception):
    """Ends a reconcile early with a not-Ready outcome."""

    def __init__(self, reason: str, message: str, *, status: cond.Status = "False", retry_after: float | None = None,
                 event: Event | None = None) -> None:
        super().__init__(message)
        self.reason, self.message, self.status = reason, message, status
        self.retry_after, self.event = retry_after, event


async def reconcile_integration(
    obj: IntegrationObject, kube: SecretReader, clients: StripeClients, public_base_url: str,
    retry_delay: float = 10.0, *, endpoint_overlap: float = 3600.0, moment: dt.datetime | None = None,
) -> Outcome:
    out = Outcome()
    url = webhook_url(public_base_url, obj.namespace, obj.name)
    out.status["webhookURL"] = url
    out.status["observedGeneration"] = obj.generation
    others: list[cond.Condition] = []
    # Recomputed here from what the receiver recorded, so the receiver's condition survives the operator's writes.
    version_condition = api_versions.condition(
        (obj.status.get("deliveries") or {}).get("apiVersions"), managed=obj.spec.webhook_endpoint.managed, url=url,
        now=moment,
    )
    if version_condition is not None:
        others.append(version_condition)
    secrets = _ReferencedSecrets(kube, obj.namespace)
    try:
        entry = await _verified_client(obj, secrets, clients, out, others, retry_delay)
        await _webhook_secret(obj, kube, secrets, entry, url, out, others, retry_delay,
                              _Overlap(endpoint_overlap, moment or cond.now()))
    except _Stop as stop:
        ready = cond.Condition(cond.READY, stop.status, stop.reason, stop.message)
        if stop.event:
            out.events.append(stop.event)
        out.retry_after = stop.retry_after
        out.permanent = stop.retry_after is None
        unwatched = _secrets_watched(obj, secrets, out, others)
        out.status["conditions"] = cond.merge(cond.with_kstatus(
            obj.status.get("conditions"), ready, others, generation=obj.generation,
            stalled=out.permanent, reconciling=not out.permanent,
        ), [], generation=None, remove=unwatched)
        entry = clients.get(obj.namespace, obj.name)
        if entry is not None:
            entry.ready = False
        return out

    entry.active = obj.spec.active
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
    out.status["conditions"] = cond.merge(cond.with_kstatus(
        obj.status.get("conditions"), ready, others, generation=obj.generation
    ), [], generation=None, remove=unwatched)
    return out


def _secrets_watched(
    obj: IntegrationObject, secrets: _ReferencedSecrets, out: Outcome, others: list[cond.Condition]
) -> list[str]:
    """Adds ``SecretsWatched`` (and its Warning, once) to the outcome; the conditions to remove (none was read)."""
    watched = build_secrets_watched(obj.namespace, secrets.labelled)
    out.events.extend(secrets_watched_events(cond.get(obj.status.get("conditions"), SECRETS_WATCHED), watched))
    if watched is None:
        return [SECRETS_WATCHED]
    others.append(watched)
    return []


async def _verified_client(
    obj: IntegrationObject, secrets: _ReferencedSecrets, clients: StripeClients, out: Outcome,
    others: list[cond.Condition], retry_delay: float,
) -> IntegrationClient:
    ref = obj.spec.secret_key_ref
    where = f'Secret "{ref.name}" key "{ref.key}"'

    def key_problem(reason: str, message: str) -> _Stop:
        others.append(cond.Condition("SecretKeyValid", "False", reason, message))
        return _Stop(reason, message)

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
        key = parse_secret_key(data[ref.key], where)
    except KeyProblem as problem:
        raise key_problem(problem.reason, str(problem)) from None

    entry, rotated = await clients.for_key(obj.namespace, obj.name, key)
    try:
        account = (await entry.call(lambda c: c.v1.accounts.retrieve_current_async())).to_dict()
    except stripe.StripeError as exc:
        if is_auth_error(exc):
            message = (
                f"Stripe rejected the key in {where} (401): it was revoked, rolled or mistyped. Paste a current key "
                "from Stripe Dashboard → Developers → API keys into the Secret."
            )
            others.append(cond.Condition("SecretKeyValid", "False", "InvalidSecretKey", message))
            raise _Stop("InvalidSecretKey", message, event=Event("Warning", "InvalidKey", message)) from None
        if isinstance(exc, stripe.PermissionError):
            message = (
                f"The restricted key in {where} lacks a permission fluxrate needs: grant it write access to "
                "Payment Links and Webhook Endpoints and read access to Checkout Sessions."
            )
            others.append(cond.Condition("SecretKeyValid", "False", "KeyPermissionDenied", message))
            raise _Stop("KeyPermissionDenied", message, event=Event("Warning", "InvalidKey", message)) from None
        if is_retryable(exc):
            raise _Stop(
                "StripeUnavailable",
                f"Stripe could not be reached to verify the key ({type(exc).__name__}); retrying with backoff.",
                status="Unknown", retry_after=retry_delay,
            ) from None
        raise

    account_id = str(account.get("id"))
    previous_account, previous_mode = obj.status.get("accountId"), obj.status.get("mode")
    accepted = obj.annotations.get(ACCEPT_ACCOUNT_ANNOTATION)
    if previous_account and (account_id, key.mode) != (previous_account, previous_mode) and accepted != account_id:
        message = (
            f"The key in {where} belongs to Stripe account {account_id} ({key.mode} mode), but this integration is "
            f"connected to {previous_account} ({previous_mode} mode); fluxrate does not switch silently, since "
            "links and webhooks of the old account would be orphaned. Restore the previous key, or accept the change: "
            f"kubectl -n {obj.namespace} annotate stripeintegration {obj.name} "
            f"{ACCEPT_ACCOUNT_ANNOTATION}={account_id} --overwrite"
        )
        others.append(cond.Condition("SecretKeyValid", "False", "AccountChanged", message))
        await _close_unadopted(clients, obj, entry)
        raise _Stop("AccountChanged", message, event=Event("Warning", "AccountChanged", message))

    entry.account_id = account_id
    previous = clients.adopt(obj.namespace, obj.name, entry)
    if previous is not None:
        await close_stripe_client(previous.client)
    if rotated:
        out.events.append(Event("Normal", "KeyRotated", f"Now using the new key from {where} ({key.mode} mode)."))
    out.status["mode"] = key.mode
    out.status["accountId"] = account_id
    others.append(cond.Condition("SecretKeyValid", "True", "Verified", f"The key in {where} works for {account_id}."))
    return entry


async def _close_unadopted(clients: StripeClients, obj: IntegrationObject, entry: IntegrationClient) -> None:
    if clients.get(obj.namespace, obj.name) is not entry:
        await close_stripe_client(entry.client)


@dataclass(frozen=True)
class _Overlap:
    seconds: float
    moment: dt.datetime


async def _webhook_secret(
    obj: IntegrationObject, kube: SecretReader, secrets: _ReferencedSecrets, entry: IntegrationClient, url: str,
    out: Outcome, others: list[cond.Condition], retry_delay: float, overlap: _Overlap,
) -> None:
    events = obj.spec.webhook_endpoint.enabled_events
    if obj.spec.webhook_endpoint.managed:
        await _managed_endpoint(obj, kube, entry, url, out, others, retry_delay, overlap)
        return
    retiring = obj.status.get("retiringWebhookEndpoint") or {}
    if retiring.get("id"):
        await _delete_endpoint(entry, retiring["id"], retry_delay)
        out.status["retiringWebhookEndpoint"] = None
        out.events.append(Event("Normal", "EndpointDeleted", f"Deleted managed webhook endpoint {retiring['id']}."))
    if obj.status.get("webhookEndpointId"):
        # No longer managed: remove the endpoint fluxrate created, so it does not deliver with a secret nobody has.
        endpoint_id = obj.status["webhookEndpointId"]
        try:
            await entry.call(lambda c: c.v1.webhook_endpoints.delete_async(endpoint_id))
        except stripe.StripeError as exc:
            if not is_not_found(exc):
                raise _Stop("StripeUnavailable", f"Could not delete the managed endpoint {endpoint_id}; retrying.",
                            status="Unknown", retry_after=retry_delay) from None
        out.status["webhookEndpointId"] = None
        out.status["webhookEndpointApiVersion"] = None
        out.status["webhookSecretName"] = None
        out.events.append(Event("Normal", "EndpointDeleted", f"Deleted managed webhook endpoint {endpoint_id}."))
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


async def _delete_endpoint(entry: IntegrationClient, endpoint_id: str, retry_delay: float) -> None:
    """Delete an endpoint, tolerating one already gone."""
    try:
        await entry.call(lambda c: c.v1.webhook_endpoints.delete_async(endpoint_id))
    except stripe.StripeError as exc:
        if not is_not_found(exc):
            raise _Stop("StripeUnavailable", f"Could not delete the managed endpoint {endpoint_id}; retrying.",
                        status="Unknown", retry_after=retry_delay) from None


async def _retire_endpoint(
    obj: IntegrationObject, kube: SecretReader, entry: IntegrationClient, out: Outcome, retry_delay: float,
    overlap: _Overlap, *, now: bool = False,
) -> bool:
    """End the overlap of a replaced endpoint once it is over (or ``now``): delete it in Stripe, then drop its
    signing secret from the Secret. Returns whether an endpoint is still retiring."""
    retiring = obj.status.get("retiringWebhookEndpoint") or {}
    if not retiring.get("id"):
        return False
    if not now and not overlap_over(retiring, overlap.moment, overlap.seconds):
        return True
    await _delete_endpoint(entry, retiring["id"], retry_delay)
    secret_name = owned_secret_name(obj.name)
    stored = await kube.read_secret(obj.namespace, secret_name) or {}
    lines = secret_lines(stored.get(MANAGED_SIGNING_SECRET_KEY))
    if len(lines) > 1:  # the current endpoint's secret is the first line
        await kube.write_owned_secret(obj.ref, secret_name, {MANAGED_SIGNING_SECRET_KEY: lines[0]},
                                      MANAGED_BY_LABELS)
    out.status["retiringWebhookEndpoint"] = None
    out.events.append(Event("Normal", "EndpointRetired",
                            f"Deleted webhook endpoint {retiring['id']} (API version "
                            f"{retiring.get('apiVersion') or 'account default'}) after the overlap with its "
                            "replacement; its signing secret no longer verifies."))
    return False


async def _managed_endpoint(
    obj: IntegrationObject, kube: SecretReader, entry: IntegrationClient, url: str, out: Outcome,
    others: list[cond.Condition], retry_delay: float, overlap: _Overlap,
) -> None:
    events = obj.spec.webhook_endpoint.enabled_events
    params = build_webhook_endpoint_params(url, events, obj.namespace, obj.name, obj.uid)
    version = params["api_version"]
    secret_name = owned_secret_name(obj.name)
    current_id: str | None = obj.status.get("webhookEndpointId")
    replacing: Mapping[str, Any] | None = None  # the endpoint replaced for its API version, kept for an overlap

    def unavailable(exc: BaseException) -> _Stop:
        return _Stop("StripeUnavailable", f"Stripe could not be reached to manage the webhook endpoint "
                     f"({type(exc).__name__}); retrying with backoff.", status="Unknown", retry_after=retry_delay)

    stored_lines: list[str] = []
    try:
        if current_id is not None:
            found = await kube.read_secret_and_labels(obj.namespace, secret_name)
            stored, stored_labels = found if found is not None else (None, {})
            try:
                endpoint = (await entry.call(lambda c: c.v1.webhook_endpoints.retrieve_async(current_id))).to_dict()
            except stripe.StripeError as exc:
                if not is_not_found(exc):
                    raise
                endpoint = None
            if endpoint is not None and not (stored and stored.get(MANAGED_SIGNING_SECRET_KEY)):
                # The signing secret is only returned on create: without it, replace the endpoint.
                await entry.call(lambda c: c.v1.webhook_endpoints.delete_async(current_id))
                endpoint = None
            if endpoint is not None:
                if stored and not is_watched(stored_labels):  # written before Secrets were labelled: label it
                    await kube.write_owned_secret(obj.ref, secret_name,
                                                  {MANAGED_SIGNING_SECRET_KEY: stored[MANAGED_SIGNING_SECRET_KEY]},
                                                  MANAGED_BY_LABELS)
                if needs_new_version(endpoint, version):
                    # A second replacement before the first overlap ended: the older endpoint goes now.
                    await _retire_endpoint(obj, kube, entry, out, retry_delay, overlap, now=True)
                    replacing = endpoint
                    stored_lines = secret_lines((stored or {}).get(MANAGED_SIGNING_SECRET_KEY))
                else:
                    await _retire_endpoint(obj, kube, entry, out, retry_delay, overlap)
                    update = endpoint_drift(endpoint, url, events)
                    if update:
                        await entry.call(lambda c: c.v1.webhook_endpoints.update_async(current_id, params=update))
                        out.events.append(Event(
                            "Normal", "EndpointRepaired",
                            f"Webhook endpoint {current_id} had drifted ({', '.join(sorted(update))}); repaired.",
                        ))
                    _endpoint_ready(others, current_id, secret_name, version)
                    return
        created = (await entry.call(lambda c: c.v1.webhook_endpoints.create_async(
            params=params, options={"idempotency_key": endpoint_idempotency_key(obj.uid, current_id)}
        ))).to_dict()
    except stripe.StripeError as exc:
        if is_retryable(exc):
            raise unavailable(exc) from None
        message = user_message(exc)
        if "16" in message or "limit" in message.lower():
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
        raise _Stop(reason, message, event=Event("Warning", reason, message)) from None

    new_id = str(created["id"])
    lines = [created["secret"]]
    if replacing is not None:
        # Both endpoints deliver during the overlap (the receiver dedupes by event id): both secrets verify.
        lines += [line for line in stored_lines if line != created["secret"]]
    await kube.write_owned_secret(obj.ref, secret_name, {MANAGED_SIGNING_SECRET_KEY: "\n".join(lines)},
                                  MANAGED_BY_LABELS)
    out.status["webhookEndpointId"] = new_id
    out.status["webhookEndpointApiVersion"] = created.get("api_version") or version
    out.status["webhookSecretName"] = secret_name
    if replacing is not None:
        old_version = replacing.get("api_version")
        out.status["retiringWebhookEndpoint"] = {"id": current_id, "apiVersion": old_version,
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
    _endpoint_ready(others, new_id, secret_name, version)


def _endpoint_ready(others: list[cond.Condition], endpoint_id: str, secret_name: str, version: str) -> None:
    others.append(cond.Condition("WebhookEndpointReady", "True", "EndpointRegistered",
                                 f"Stripe webhook endpoint {endpoint_id} delivers to this integration in API "
                                 f"version {version}."))
    others.append(cond.Condition("WebhookSecretConfigured", "True", "ManagedEndpoint",
                                 f'The signing secret of {endpoint_id} is kept in Secret "{secret_name}".'))


async def disconnect_integration(obj: IntegrationObject, clients: StripeClients, kube: SecretReader) -> list[Event]:
    """Delete the managed endpoint, and one still retiring (tolerating them gone), and nothing else in Stripe."""
    events: list[Event] = []
    retiring = (obj.status.get("retiringWebhookEndpoint") or {}).get("id")
    endpoint_ids = [e for e in (obj.status.get("webhookEndpointId"), retiring) if e]
    if endpoint_ids:
        entry = await _client_for_disconnect(obj, clients, kube)
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


async def _client_for_disconnect(
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
