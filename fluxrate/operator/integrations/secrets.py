"""The Secrets an integration reads: the watch label that makes their changes noticed at once, its condition
(``SecretsWatched``), and the Secret fluxrate owns for a managed endpoint's signing secret."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fluxrate import API_GROUP
from fluxrate import conditions as cond
from fluxrate.decision import Event
from fluxrate.operator.integrations.objects import SecretReader

# The label that marks the Secrets fluxrate reads. The operator lists and watches only Secrets carrying it (a
# labelSelector on the request, so the API server sends no others), to notice key and webhook-secret rotation at
# once; a referenced Secret without it still works, but its changes are noticed at the next resync.
WATCH_LABEL = f"{API_GROUP}/watch"
WATCH_LABEL_VALUE = "true"
WATCH_SELECTOR = f"{WATCH_LABEL}={WATCH_LABEL_VALUE}"
SECRETS_WATCHED = "SecretsWatched"
MANAGED_BY_LABELS = {"app.kubernetes.io/managed-by": "fluxrate", f"{API_GROUP}/role": "webhook-signing-secret",
                     WATCH_LABEL: WATCH_LABEL_VALUE}


def owned_secret_name(integration: str) -> str:
    return f"{integration[:228]}-webhook-signing"


def secret_lines(value: str | None) -> list[str]:
    return [line.strip() for line in (value or "").splitlines() if line.strip()]


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


class ReferencedSecrets:
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
