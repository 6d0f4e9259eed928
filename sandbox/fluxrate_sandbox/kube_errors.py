"""Kubernetes ``Status`` errors as the real API server words them."""

from __future__ import annotations

from typing import Any

import attrs
from kmock import KubernetesError

from fluxrate_sandbox import kube_resources as kr
from fluxrate_sandbox.kube_schema import Cause

Obj = dict[str, Any]


@attrs.frozen
class ApiError(KubernetesError):
    headers: dict[str, str] | None = None

    def body(self) -> Obj:
        body: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                     "message": self.message or ""}
        if self.reason:  # the real server omits an empty reason (e.g. its 500s)
            body["reason"] = self.reason
        body["code"] = self.status
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


def deleted_status(res: kr.ResourceDef, obj: Obj) -> Obj:
    """What DELETE answers when the object is gone at once (the real store returns the object only while
    finalizers hold it)."""
    details = details_for(res, obj["metadata"]["name"])
    details["uid"] = obj["metadata"]["uid"]
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}


def forbidden(user: str, verb: str, res_group: str | None, resource: str | None, namespace: str | None,
              name: str | None, path: str, subresource: str | None = None) -> ApiError:
    """The authorizer's 403, worded as the real server words it (apiserver's ``forbiddenMessage``)."""
    if resource is None or res_group is None:
        return ApiError(403, "Forbidden", f'forbidden: User "{user}" cannot {verb} path "{path}"', {})
    where = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    full = f"{resource}/{subresource}" if subresource else resource
    why = f'User "{user}" cannot {verb} resource "{full}" in API group "{res_group}" {where}'
    qualified = f"{resource}.{res_group}" if res_group else resource
    details: Obj = {"name": name} if name else {}
    if res_group:
        details["group"] = res_group
    details["kind"] = resource
    subject = f'{qualified} "{name}"' if name else qualified
    return ApiError(403, "Forbidden", f"{subject} is forbidden: {why}", details)
