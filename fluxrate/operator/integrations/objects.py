"""What the parts of an integration's reconcile share: the object, the Kubernetes calls they need, and ``Stop``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from fluxrate import conditions as cond
from fluxrate.decision import Event
from fluxrate.kube import ObjectRef
from fluxrate.models import StripeIntegrationSpec


class SecretReader(Protocol):
    async def read_secret(self, namespace: str, name: str) -> dict[str, str] | None: ...

    async def read_secret_and_labels(
        self, namespace: str, name: str
    ) -> tuple[dict[str, str], dict[str, str]] | None: ...

    async def write_owned_secret(
        self, owner: ObjectRef, name: str, data: Mapping[str, str], labels: Mapping[str, str]
    ) -> None: ...


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


class Stop(Exception):
    """Ends a reconcile early with a not-Ready outcome."""

    def __init__(self, reason: str, message: str, *, status: cond.Status = "False", retry_after: float | None = None,
                 event: Event | None = None) -> None:
        super().__init__(message)
        self.reason, self.message, self.status = reason, message, status
        self.retry_after, self.event = retry_after, event


@dataclass(frozen=True)
class Overlap:
    """How long a replaced endpoint keeps delivering beside its replacement, and the moment of this reconcile."""

    seconds: float
    moment: dt.datetime
