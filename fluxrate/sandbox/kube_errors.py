"""Kubernetes ``Status`` errors as the real API server words them."""

from __future__ import annotations

from typing import Any

import attrs
from kmock._internal.k8s import KubernetesError

from fluxrate.sandbox import kube_resources as kr
from fluxrate.sandbox.kube_schema import Cause

Obj = dict[str, Any]


@attrs.frozen
class ApiError(KubernetesError):
    headers: dict[str, str] | None = None

    def body(self) -> Obj:
        body: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                     "message": self.message or "", "reason": self.reason or "", "code": self.status}
        if self.details is not None:
            body["details"] = self.details
        return body


def details_for(res: kr.ResourceDef, name: str, kind: str | None = None) -> Obj:
    details: Obj = {"name": name}
    if res.group:
        details["group"] = res.group
    details["kind"] = kind or res.plural
    return details


def not_found(res: kr.ResourceDef, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{res.qualified} "{name}" not found', details_for(res, name))


def conflict(res: kr.ResourceDef, name: str, why: str | None = None) -> ApiError:
    why = why or "the object has been modified; please apply your changes to the latest version and try again"
    return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {res.qualified} "{name}": {why}',
                    details_for(res, name))


def invalid(res: kr.ResourceDef, name: str, causes: list[Cause]) -> ApiError:
    rendered = [c.render() for c in causes]
    summary = rendered[0] if len(rendered) == 1 else "[" + ", ".join(rendered) + "]"
    details = details_for(res, name, kind=res.kind)
    details["causes"] = [c.as_dict() for c in causes]
    return ApiError(422, "Invalid", f'{res.qualified_kind} "{name}" is invalid: {summary}', details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message, None)
