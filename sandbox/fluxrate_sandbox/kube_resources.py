"""Resource definitions served by the emulator: built-ins, CRD-defined ones, discovery, tables, OpenAPI."""

from __future__ import annotations

import datetime
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from fluxrate_sandbox.kube_cel import CelRules
from fluxrate_sandbox.kube_schema import SchemaValidator
from fluxrate_sandbox.kube_selectors import compile_jsonpath

ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass
class ResourceDef:
    group: str
    version: str
    plural: str
    kind: str
    singular: str
    namespaced: bool
    short_names: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    verbs: list[str] = field(default_factory=lambda: list(ALL_VERBS))
    subresources: set[str] = field(default_factory=set)
    schema: dict[str, Any] | None = None  # openAPIV3Schema (CRDs only)
    printer_columns: list[dict[str, Any]] = field(default_factory=list)
    crd_name: str | None = None  # set for CRD-defined resources
    field_selectors: set[str] = field(default_factory=set)
    validator: SchemaValidator | None = None
    cel: CelRules | None = None

    def __post_init__(self) -> None:
        self.field_selectors = {"metadata.name", "metadata.namespace", *self.field_selectors}
        if self.schema is not None:
            self.validator = SchemaValidator(self.schema)
            self.cel = CelRules.compile(f"{self.plural}.{self.group}", self.schema)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def storage_key(self) -> tuple[str, str]:
        return (self.group, self.plural)

    @property
    def qualified(self) -> str:
        """``invoices.billing.fluxrate.co`` / ``secrets`` as used in error messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def qualified_kind(self) -> str:
        return f"{self.kind}.{self.group}" if self.group else self.kind

    @property
    def is_custom(self) -> bool:
        return self.crd_name is not None

    def status_subresource(self) -> bool:
        return "status" in self.subresources


def builtin_resources() -> list[ResourceDef]:
    return [
        ResourceDef("", "v1", "namespaces", "Namespace", "namespace", False, ["ns"],
                    verbs=["create", "delete", "get", "list", "patch", "update", "watch"],
                    subresources={"status"}, field_selectors={"status.phase"}),
        ResourceDef("", "v1", "secrets", "Secret", "secret", True, field_selectors={"type"}),
        ResourceDef("", "v1", "configmaps", "ConfigMap", "configmap", True, ["cm"]),
        ResourceDef("", "v1", "serviceaccounts", "ServiceAccount", "serviceaccount", True, ["sa"]),
        ResourceDef("", "v1", "events", "Event", "event", True, ["ev"], field_selectors={
            "involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
            "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
            "reason", "reportingComponent", "source", "type"}),
        ResourceDef("events.k8s.io", "v1", "events", "Event", "event", True, ["ev"], field_selectors={
            "regarding.kind", "regarding.namespace", "regarding.name", "regarding.uid", "reason", "type"}),
        ResourceDef("coordination.k8s.io", "v1", "leases", "Lease", "lease", True),
        ResourceDef("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition",
                    "customresourcedefinition", False, ["crd", "crds"], categories=["api-extensions"],
                    subresources={"status"}),
    ]


def resources_from_crd(crd: dict[str, Any]) -> list[ResourceDef]:
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    result = []
    for version in spec.get("versions") or []:
        if not version.get("served", True):
            continue
        schema = ((version.get("schema") or {}).get("openAPIV3Schema")) or {
            "type": "object", "x-kubernetes-preserve-unknown-fields": True}
        result.append(ResourceDef(
            group=spec["group"], version=version["name"], plural=names["plural"], kind=names["kind"],
            singular=names.get("singular") or names["kind"].lower(),
            namespaced=spec.get("scope", "Namespaced") == "Namespaced",
            short_names=list(names.get("shortNames") or []), categories=list(names.get("categories") or []),
            subresources={k for k in (version.get("subresources") or {}) if k in ("status", "scale")},
            schema=schema, printer_columns=list(version.get("additionalPrinterColumns") or []),
            crd_name=crd["metadata"]["name"],
            field_selectors={f["jsonPath"].lstrip(".") for f in version.get("selectableFields") or []},
        ))
    return result


def storage_version(crd: dict[str, Any]) -> str:
    for version in (crd.get("spec") or {}).get("versions") or []:
        if version.get("storage"):
            return str(version["name"])
    return str(crd["spec"]["versions"][0]["name"])


# --------------------------------------------------------------------------------------------------
# Discovery


def api_resource_list(group_version: str, resources: list[ResourceDef]) -> dict[str, Any]:
    entries: list[dict[str, Any]] = []
    for res in sorted(resources, key=lambda r: r.plural):
        entry: dict[str, Any] = {
            "name": res.plural, "singularName": res.singular, "namespaced": res.namespaced, "kind": res.kind,
            "verbs": list(res.verbs),
            "storageVersionHash": hashlib.sha256(f"{res.api_version}/{res.plural}".encode()).hexdigest()[:11],
        }
        if res.short_names:
            entry["shortNames"] = list(res.short_names)
        if res.categories:
            entry["categories"] = list(res.categories)
        entries.append(entry)
        for sub in sorted(res.subresources):
            entries.append({"name": f"{res.plural}/{sub}", "singularName": "", "namespaced": res.namespaced,
                            "kind": res.kind if sub == "status" else "Scale", "verbs": ["get", "patch", "update"]})
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": entries}


def api_group(group: str, versions: list[str]) -> dict[str, Any]:
    return {
        "name": group,
        "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in versions],
        "preferredVersion": {"groupVersion": f"{group}/{versions[0]}", "version": versions[0]},
    }


# --------------------------------------------------------------------------------------------------
# Server-side tables for `kubectl get`


def human_duration(seconds: float) -> str:
    """Port of k8s.io/apimachinery/pkg/util/duration.HumanDuration."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rest = s % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d" if rest == 0 else f"{hours // 24}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


def _age(timestamp: Any) -> str | None:
    if not isinstance(timestamp, str):
        return None
    try:
        then = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "<invalid>"
    return human_duration((datetime.datetime.now(datetime.UTC) - then).total_seconds())


def _cell(column_type: str, values: list[Any]) -> Any:
    if not values:
        return None
    value = values[0]
    if column_type == "date":
        return _age(value)
    if column_type == "integer" and isinstance(value, int | float):
        return int(value)
    if column_type == "number" and isinstance(value, int | float):
        return value
    if column_type == "boolean" and isinstance(value, bool):
        return value
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return value if isinstance(value, str) else json.dumps(value)


def table(res: ResourceDef, objects: list[dict[str, Any]], resource_version: str) -> dict[str, Any]:
    columns: list[dict[str, Any]] = [{
        "name": "Name", "type": "string", "format": "name", "priority": 0,
        "description": "Name must be unique within a namespace.",
    }]
    getters: list[tuple[str, Any]] = []
    declared = res.printer_columns or []
    if res.kind == "Secret":
        declared = [{"name": "Type", "type": "string", "jsonPath": ".type"}]
    for column in declared:
        columns.append({"name": column["name"], "type": column.get("type", "string"),
                        "format": column.get("format", ""), "description": column.get("description", ""),
                        "priority": column.get("priority", 0)})
        try:
            getters.append((column.get("type", "string"), compile_jsonpath(column["jsonPath"])))
        except ValueError:
            getters.append((column.get("type", "string"), lambda _obj: []))
    if not res.printer_columns:
        columns.append({"name": "Age", "type": "date", "format": "", "priority": 0,
                        "description": "CreationTimestamp is a timestamp representing the server time."})
        getters.append(("date", lambda obj: [obj.get("metadata", {}).get("creationTimestamp")]))
    rows = []
    for obj in objects:
        cells = [obj["metadata"]["name"]] + [_cell(kind, getter(obj)) for kind, getter in getters]
        rows.append({"cells": cells, "object": {
            "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}})
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": resource_version},
            "columnDefinitions": columns, "rows": rows}


# --------------------------------------------------------------------------------------------------
# OpenAPI v3: just enough for kubectl's field-validation probe and `kubectl explain`.

_BODY_TYPES = ["application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml"]


def _schema_name(res: ResourceDef) -> str:
    group = ".".join(reversed(res.group.split("."))) if res.group else "io.k8s.api.core"
    return f"{group}.{res.version}.{res.kind}"


def openapi_v3_document(resources: list[ResourceDef]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    query = [{"name": n, "in": "query", "schema": {"type": "string"}, "uniqueItems": True}
             for n in ("dryRun", "fieldManager", "fieldValidation")]
    for res in resources:
        gvk = {"group": res.group, "version": res.version, "kind": res.kind}
        name = _schema_name(res)
        schema = dict(res.schema) if res.schema else {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        schema["x-kubernetes-group-version-kind"] = [gvk]
        schemas[name] = schema
        ref = {"schema": {"$ref": f"#/components/schemas/{name}"}}
        # Strategic merge is accepted for built-ins, but not advertised: the stub schemas here carry no
        # patch-merge keys, so kubectl must compute strategic patches from its own compiled-in types.
        patch_types = list(_BODY_TYPES)
        prefix = f"/apis/{res.group}/{res.version}" if res.group else "/api/v1"
        collection = f"{prefix}/namespaces/{{namespace}}/{res.plural}" if res.namespaced else f"{prefix}/{res.plural}"
        ok = {"200": {"description": "OK", "content": {"application/json": ref}}}
        op = {"x-kubernetes-group-version-kind": gvk, "parameters": query, "responses": ok}
        paths[collection] = {
            "get": {**op, "x-kubernetes-action": "list"},
            "post": {**op, "x-kubernetes-action": "post", "requestBody": {"content": {"application/json": ref}}},
        }
        paths[f"{collection}/{{name}}"] = {
            "get": {**op, "x-kubernetes-action": "get"},
            "put": {**op, "x-kubernetes-action": "put", "requestBody": {"content": {"application/json": ref}}},
            "patch": {**op, "x-kubernetes-action": "patch",
                      "requestBody": {"content": {t: {"schema": {"type": "object"}} for t in patch_types}}},
            "delete": {**op, "x-kubernetes-action": "delete"},
        }
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.30.0"},
            "paths": paths, "components": {"schemas": schemas}}
