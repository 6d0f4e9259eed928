"""Fault injection knobs for the Kubernetes API emulator."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

REASONS = {
    400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 409: "Conflict",
    410: "Expired", 422: "Invalid", 429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable",
    504: "Timeout",
}


@dataclass
class FaultRule:
    """Answer matching requests with ``status``; ``remaining=None`` means forever (until cleared). The first
    ``after`` matching requests go through untouched (fail the third status write of an object: ``after=2``)."""

    status: int = 500
    remaining: int | None = 1
    method: str | None = None  # HTTP method, e.g. "PATCH"
    verb: str | None = None  # get, list, watch, create, update, patch, delete, deletecollection
    resource: str | None = None  # plural ("invoices") or "plural.group"
    subresource: str | None = None  # None: any; "": main resource only; "status": status only
    namespace: str | None = None
    name: str | None = None
    message: str = "injected fault (fluxrate kube sandbox)"
    retry_after: int | None = None
    after: int = 0
    hits: int = 0
    passed: int = 0

    def matches(self, *, method: str, verb: str | None, plural: str | None, group: str | None,
                subresource: str | None, namespace: str | None, name: str | None) -> bool:
        if self.remaining is not None and self.remaining <= 0:
            return False
        if self.method is not None and self.method.upper() != method.upper():
            return False
        if self.verb is not None and self.verb != verb:
            return False
        if self.resource is not None and self.resource not in (plural, f"{plural}.{group}" if group else plural):
            return False
        if self.subresource is not None and self.subresource != (subresource or ""):
            return False
        if self.namespace is not None and self.namespace != namespace:
            return False
        return self.name is None or self.name == name


class Faults:
    """
    Knobs for tests and benchmarks::

        kube.faults.fail_next(1, status=500, verb="patch", resource="invoices", subresource="status")
        kube.faults.outage = True    # every request answers 503, open watches are cut
        kube.faults.latency = 0.05   # seconds added to every request
    """

    def __init__(self, on_outage: Callable[[], None] | None = None) -> None:
        self._on_outage = on_outage
        self._outage = False
        self.outage_status = 503
        self.latency = 0.0
        self.rules: list[FaultRule] = []

    @property
    def outage(self) -> bool:
        return self._outage

    @outage.setter
    def outage(self, value: bool) -> None:
        self._outage = bool(value)
        if value and self._on_outage is not None:
            self._on_outage()

    def fail_next(self, n: int | None = 1, status: int = 500, *, method: str | None = None,
                  verb: str | None = None, resource: str | None = None, subresource: str | None = None,
                  namespace: str | None = None, name: str | None = None,
                  message: str | None = None, retry_after: int | None = None, after: int = 0) -> FaultRule:
        rule = FaultRule(status=status, remaining=n, method=method, verb=verb, resource=resource,
                         subresource=subresource, namespace=namespace, name=name, retry_after=retry_after,
                         after=after)
        if message is not None:
            rule.message = message
        self.rules.append(rule)
        return rule

    def fail_always(self, status: int = 500, **criteria: Any) -> FaultRule:
        return self.fail_next(None, status, **criteria)  # type: ignore[arg-type]

    def clear(self) -> None:
        self.rules.clear()
        self._outage = False
        self.latency = 0.0

    def take(self, **request: str | None) -> FaultRule | None:
        for rule in self.rules:
            if rule.matches(**request):  # type: ignore[arg-type]
                if rule.passed < rule.after:
                    rule.passed += 1
                    continue
                rule.hits += 1
                if rule.remaining is not None:
                    rule.remaining -= 1
                return rule
        return None
