"""Reconciling a StripeIntegration, in parts:

- ``reconcile``: the reconcile itself (and the disconnect on deletion), returning a ``fluxrate.decision.Decision``;
- ``keys``: verifying the Stripe key in the Secret, and the account it belongs to;
- ``endpoints``: the webhook endpoint fluxrate manages in Stripe, or the signing secret of one the user made;
- ``subscriptions``: whether an endpoint the user made delivers every event type fluxrate needs (``MissingEvents``);
- ``secrets``: the Secrets read, their watch label (``SecretsWatched``) and the Secret fluxrate owns;
- ``objects``: what these share (the integration object, the Kubernetes calls they make, ``Stop``).
"""

from fluxrate.operator.integrations.endpoints import (
    build_webhook_endpoint_params,
    endpoint_drift,
    endpoint_idempotency_key,
    needs_new_version,
    next_step_for_webhook_secret,
    overlap_over,
)
from fluxrate.operator.integrations.keys import ACCEPT_ACCOUNT_ANNOTATION
from fluxrate.operator.integrations.objects import IntegrationObject, SecretReader
from fluxrate.operator.integrations.reconcile import disconnect_integration, reconcile_integration
from fluxrate.operator.integrations.secrets import (
    MANAGED_BY_LABELS,
    SECRETS_WATCHED,
    WATCH_LABEL,
    WATCH_LABEL_VALUE,
    WATCH_SELECTOR,
    build_secrets_watched,
    is_watched,
    label_command,
    owned_secret_name,
    secret_lines,
    secrets_watched_events,
)

__all__ = [
    "ACCEPT_ACCOUNT_ANNOTATION",
    "MANAGED_BY_LABELS",
    "SECRETS_WATCHED",
    "WATCH_LABEL",
    "WATCH_LABEL_VALUE",
    "WATCH_SELECTOR",
    "IntegrationObject",
    "SecretReader",
    "build_secrets_watched",
    "build_webhook_endpoint_params",
    "disconnect_integration",
    "endpoint_drift",
    "endpoint_idempotency_key",
    "is_watched",
    "label_command",
    "needs_new_version",
    "next_step_for_webhook_secret",
    "overlap_over",
    "owned_secret_name",
    "reconcile_integration",
    "secret_lines",
    "secrets_watched_events",
]
