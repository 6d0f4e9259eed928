"""A stateful Kubernetes API server emulator, built on kmock's ``KubernetesEmulator``.

kmock gives the handler/record plumbing, the Kubernetes error type and the
``/version`` scaffold.  Its DSL dispatch, in-memory object store, URL parser
(which cannot parse ``/api/v1/namespaces``) and watch bus lack what a real API
server does (resourceVersion, uid, generation, status subresource, PUT,
selectors, schemas, ...), so those pieces are replaced here.

All state changes are synchronous (no ``await`` between read and write), so the
single event loop gives the same linearizability etcd gives the real server.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import copy
import datetime
import json
import logging
import random
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp.web
import jsonpatch
import yaml
from kmock import KubernetesEmulator, KubernetesError

from fluxrate_sandbox import kube_protobuf
from fluxrate_sandbox import kube_resources as kr
from fluxrate_sandbox.kube_errors import (
    ApiError,
    bad_request,
    conflict,
    deleted_status,
    details_for,
    forbidden,
    invalid,
    not_found,
)
from fluxrate_sandbox.kube_faults import REASONS, Faults
from fluxrate_sandbox.kube_paths import ParsedPath, PatchError, merge_patch, parse_path, strategic_merge_patch
from fluxrate_sandbox.kube_schema import Cause, apply_defaults, prune
from fluxrate_sandbox.kube_selectors import (
    SelectorError,
    fields_match,
    labels_match,
    parse_field_selector,
    parse_label_selector,
)

logger = logging.getLogger(__name__)

Obj = dict[str, Any]
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_GEN_CHARS = "bcdfghjklmnpqrstvwxz2456789"
# Schema errors after which the real server does not run CEL rules (apiextensions' hasBlockingErr).
_BLOCKING_REASONS = {"FieldValueNotSupported", "FieldValueRequired", "FieldValueTooLong", "FieldValueTooMany",
                     "FieldValueTypeInvalid"}
_JSON_PATCH_OPS = {"add", "remove", "replace", "move", "copy", "test"}
_TRUE = {"1", "t", "T", "true", "TRUE", "True"}  # Go's strconv.ParseBool
_UNAUTHENTICATED_PATHS = {"/healthz", "/livez", "/readyz"}
# What the real server's system:public-info-viewer role lets anonymous requests read.
_PUBLIC_PATHS = _UNAUTHENTICATED_PATHS | {"/version"}
ANONYMOUS = "system:anonymous"


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class WatchEvent:
    rv: int
    key: tuple[str, str]
    type: str
    obj: Obj
    old: Obj | None


@dataclass(eq=False)
class _Watcher:
    key: tuple[str, str]
    queue: asyncio.Queue[WatchEvent | None] = field(default_factory=asyncio.Queue)


def _without(obj: Obj, *keys: str) -> Obj:
    return {k: v for k, v in obj.items() if k not in keys}


class KubeEmulator(KubernetesEmulator):
    """The request handler; serve it with :class:`fluxrate_sandbox.kube_server.KubeSandbox`."""

    def __init__(self, *, token: str | None = None, bookmark_interval: float = 5.0, history_size: int = 5000,
                 auto_namespaces: bool = False, namespaces: tuple[str, ...] = ("default",)) -> None:
        super().__init__()
        self.token = token
        self.bookmark_interval = bookmark_interval
        self.auto_namespaces = auto_namespaces
        self.namespace_cleanup_delay = 0.5
        self.faults = Faults(on_outage=self.break_watches)
        self.request_log: collections.deque[tuple[str, str, int]] = collections.deque(maxlen=2000)
        self.request_count = 0
        self._rv = 0
        self._defs: dict[tuple[str, str, str], kr.ResourceDef] = {}
        self._store: dict[tuple[str, str], dict[tuple[str, str], Obj]] = collections.defaultdict(dict)
        self._history: collections.deque[WatchEvent] = collections.deque(maxlen=history_size)
        self._history_floor = 0  # events with rv <= floor are no longer replayable
        self._watchers: set[_Watcher] = set()
        self._uids: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {}
        self._dependents: dict[str, set[tuple[tuple[str, str], tuple[str, str]]]] = collections.defaultdict(set)
        for res in kr.builtin_resources():
            self._defs[(res.group, res.version, res.plural)] = res
        for namespace in namespaces:
            self.create_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})

    # ------------------------------------------------------------------------------------------------
    # Direct (in-process) access, for fixtures and assertions.

    @property
    def resource_version(self) -> int:
        return self._rv

    def resources(self) -> list[kr.ResourceDef]:
        return list(self._defs.values())

    def find_resource(self, api_version: str, plural_or_kind: str) -> kr.ResourceDef:
        group, _, version = api_version.rpartition("/")
        for res in self._defs.values():
            if res.group == group and res.version == version and plural_or_kind in (res.plural, res.kind):
                return res
        raise KeyError(f"{plural_or_kind} is not served in {api_version}")

    def get_object(self, api_version: str, plural: str, namespace: str | None, name: str) -> Obj | None:
        res = self.find_resource(api_version, plural)
        obj = self._store[res.storage_key].get(((namespace or "") if res.namespaced else "", name))
        return self._present(res, obj) if obj is not None else None

    def list_objects(self, api_version: str, plural: str, namespace: str | None = None) -> list[Obj]:
        res = self.find_resource(api_version, plural)
        return [self._present(res, o) for (ns, _), o in sorted(self._store[res.storage_key].items())
                if namespace is None or ns == namespace]

    def create_object(self, body: Obj) -> Obj:
        res = self.find_resource(body["apiVersion"], body["kind"])
        namespace = (body.get("metadata") or {}).get("namespace") or ("default" if res.namespaced else None)
        return self._present(res, self._create(res, namespace, copy.deepcopy(body), {})[0])

    def patch_object(self, api_version: str, plural: str, namespace: str | None, name: str, patch: Obj,
                     subresource: str | None = None) -> Obj:
        """A JSON merge patch with the full server semantics (validation, status isolation, events)."""
        res = self.find_resource(api_version, plural)
        old = self._existing(res, namespace if res.namespaced else None, name)
        rv = (patch.get("metadata") or {}).get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise conflict(res, name)
        patched = merge_patch(old, patch)
        patched.setdefault("metadata", {})["resourceVersion"] = old["metadata"]["resourceVersion"]
        return self._present(res, self._update(res, old, patched, subresource, {})[0])

    def delete_object(self, api_version: str, plural: str, namespace: str | None, name: str) -> Obj:
        """Delete as a client would: finalizers hold the object, owners' dependents are collected."""
        res = self.find_resource(api_version, plural)
        return self._present(res, self._delete(res, self._existing(res, namespace if res.namespaced else None,
                                                                    name), {}, {}))

    def apply_crd(self, crd: Obj) -> Obj:
        """Create or replace a CustomResourceDefinition; its resources are served immediately."""
        res = self._defs[("apiextensions.k8s.io", "v1", "customresourcedefinitions")]
        existing = self._store[res.storage_key].get(("", crd["metadata"]["name"]))
        if existing is None:
            return self._create(res, None, copy.deepcopy(crd), {})[0]
        body = copy.deepcopy(crd)
        body.setdefault("metadata", {})["resourceVersion"] = existing["metadata"]["resourceVersion"]
        return self._update(res, existing, body, None, {})[0]

    def break_watches(self) -> None:
        for watcher in list(self._watchers):
            watcher.queue.put_nowait(None)

    # ------------------------------------------------------------------------------------------------
    # HTTP entry point (replaces kmock's DSL dispatch).

    async def __call__(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:  # type: ignore[override]
        self.request_count += 1
        try:
            response = await self._dispatch(raw)
        except ApiError as e:
            response = aiohttp.web.json_response(e.body(), status=e.status, headers=e.headers)
        except KubernetesError as e:
            response = aiohttp.web.json_response(ApiError(e.status, e.reason, e.message, e.details).body(),
                                                 status=e.status)
        except Exception as e:
            logger.exception("kube emulator failed on %s %s", raw.method, raw.path_qs)
            response = aiohttp.web.json_response(ApiError(500, "InternalError", f"emulator error: {e!r}").body(),
                                                 status=500)
        self.request_log.append((raw.method, raw.path_qs, response.status))
        return response

    async def _dispatch(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        if self.faults.latency:
            await asyncio.sleep(self.faults.latency)
        parsed = parse_path(raw.path)
        query = raw.query
        verb = self._verb(raw.method, parsed, query.get("watch") in _TRUE)
        self._authenticate(raw, parsed, verb)
        if self.faults.outage:
            status = self.faults.outage_status
            raise ApiError(status, REASONS.get(status, "InternalError"), "the sandbox API server is in an outage")
        rule = self.faults.take(method=raw.method, verb=verb, plural=parsed.plural, group=parsed.group,
                                subresource=parsed.subresource, namespace=parsed.namespace, name=parsed.name)
        if rule is not None:
            headers = {"Retry-After": str(rule.retry_after)} if rule.retry_after is not None else None
            details = {"retryAfterSeconds": rule.retry_after} if rule.retry_after is not None else None
            raise ApiError(rule.status, REASONS.get(rule.status, "InternalError"), rule.message, details, headers)

        if parsed.group is None or parsed.plural is None:
            return await self._serve_non_resource(raw, parsed)
        res = self._defs.get((parsed.group, parsed.version or "", parsed.plural))
        if res is None and not self._builtin_group_version(parsed.group, parsed.version):
            # Outside the built-in APIs (e.g. a deleted CRD's group) the real server's mux answers in plain text.
            return aiohttp.web.Response(status=404, text="404 page not found\n")
        if res is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
        if parsed.subresource is not None and parsed.subresource not in res.subresources:
            raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
        if parsed.subresource is not None and verb not in ("get", "update", "patch"):
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource",
                           {})
        if res.namespaced and parsed.namespace is None and verb not in ("list", "watch"):
            raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
        namespace = parsed.namespace if res.namespaced else None

        match verb:
            case "watch":
                return await self._serve_watch(raw, res, namespace, parsed.name)
            case "list":
                return self._json(raw, self._list(res, namespace, query), res=res)
            case "get":
                obj = self._store[res.storage_key].get((namespace or "", parsed.name or ""))
                if obj is None:
                    raise not_found(res, parsed.name or "")
                return self._json(raw, self._present(res, obj, parsed.version), res=res, single=True)
            case "create":
                created, warnings = self._create(res, namespace, await self._body(raw), query)
                return self._json(raw, self._present(res, created, parsed.version), status=201, warnings=warnings)
            case "update":
                old = self._existing(res, namespace, parsed.name)
                body = await self._body(raw)
                self._check_rv(res, old, body, required=res.is_custom or res.plural == "customresourcedefinitions")
                updated, warnings = self._update(res, old, body, parsed.subresource, query)
                return self._json(raw, self._present(res, updated, parsed.version), warnings=warnings)
            case "patch":
                patched, warnings, status = await self._patch(raw, res, namespace, parsed, query)
                return self._json(raw, self._present(res, patched, parsed.version), status=status,
                                  warnings=warnings)
            case "delete":
                old = self._existing(res, namespace, parsed.name)
                options = await self._body(raw, optional=True) or {}
                deleted = self._delete(res, old, options, query)
                if not _deletion_pending(res, deleted):
                    return self._json(raw, deleted_status(res, deleted))
                return self._json(raw, self._present(res, deleted, parsed.version))
            case "deletecollection":
                options = await self._body(raw, optional=True) or {}
                items = [self._delete(res, o, options, query)
                         for o in self._select(res, namespace, query)]
                return self._json(raw, {"kind": f"{res.kind}List", "apiVersion": res.api_version,
                                        "metadata": {"resourceVersion": str(self._rv)},
                                        "items": [self._present(res, o) for o in items]})
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource",
                       {})

    def _builtin_group_version(self, group: str, version: str | None) -> bool:
        return any(d.group == group and d.version == version and not d.is_custom for d in self._defs.values())

    def _authenticate(self, raw: aiohttp.web.BaseRequest, parsed: ParsedPath, verb: str | None) -> None:
        """A wrong token is 401; no token at all is the anonymous user, whom RBAC forbids all but public paths
        (the real server's defaults: anonymous authentication on, RBAC authorization)."""
        if self.token is None or raw.path in _UNAUTHENTICATED_PATHS:
            return
        header = raw.headers.get("Authorization")
        if header is None:
            if raw.path.rstrip("/") in _PUBLIC_PATHS:
                return
            raise forbidden(ANONYMOUS, verb or raw.method.lower(), parsed.group, parsed.plural, parsed.namespace,
                            parsed.name, raw.path, parsed.subresource)
        if header != f"Bearer {self.token}":
            raise ApiError(401, "Unauthorized", "Unauthorized")

    @staticmethod
    def _verb(method: str, parsed: ParsedPath, watch: bool) -> str | None:
        if parsed.group is None or parsed.plural is None:
            return None
        match method:
            case "GET":
                return "watch" if watch else "get" if parsed.name else "list"
            case "POST":
                return None if parsed.name else "create"
            case "PUT":
                return "update" if parsed.name else None
            case "PATCH":
                return "patch" if parsed.name else None
            case "DELETE":
                return "delete" if parsed.name else "deletecollection"
        return None

    async def _body(self, raw: aiohttp.web.BaseRequest, optional: bool = False) -> Any:
        data = await raw.read()
        content_type = raw.headers.get("Content-Type", "")
        if "protobuf" in content_type:
            try:
                return kube_protobuf.decode(data)
            except kube_protobuf.ProtobufError as e:
                raise ApiError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format: "
                               f"{e} - use application/json", {}) from e
        if "cbor" in content_type:
            raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - "
                           "accepted media types include: application/json, application/yaml", {})
        if not data.strip():
            if optional:
                return None
            raise bad_request("the request body is empty")
        try:
            if "yaml" in raw.headers.get("Content-Type", ""):
                return yaml.safe_load(data)
            return json.loads(data)
        except (ValueError, yaml.YAMLError) as e:
            raise bad_request(f"the body of the request could not be decoded: {e}") from e

    def _json(self, raw: aiohttp.web.BaseRequest, payload: Obj, *, status: int = 200,
              res: kr.ResourceDef | None = None, single: bool = False,
              warnings: list[str] | None = None) -> aiohttp.web.Response:
        accept = raw.headers.get("Accept", "")
        if res is not None and "as=Table" in accept:
            objects = [payload] if single else payload["items"]
            payload = kr.table(res, objects, str(self._rv))
        headers: dict[str, str] = {}
        if warnings:
            headers["Warning"] = ", ".join(f'299 - {json.dumps(w)}' for w in warnings)
        return aiohttp.web.Response(body=json.dumps(payload).encode(), status=status,
                                    content_type="application/json", headers=headers)

    def _present(self, res: kr.ResourceDef, obj: Obj, version: str | None = None) -> Obj:
        out = copy.deepcopy(obj)
        out["apiVersion"] = f"{res.group}/{version}" if res.group and version else res.api_version
        out["kind"] = res.kind
        return out

    def _existing(self, res: kr.ResourceDef, namespace: str | None, name: str | None) -> Obj:
        obj = self._store[res.storage_key].get((namespace or "", name or ""))
        if obj is None:
            raise not_found(res, name or "")
        return obj

    # ------------------------------------------------------------------------------------------------
    # Non-resource endpoints: discovery, version, OpenAPI.

    async def _serve_non_resource(self, raw: aiohttp.web.BaseRequest, parsed: ParsedPath) -> aiohttp.web.Response:
        path = raw.path.rstrip("/") or "/"
        if raw.method != "GET":
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method", {})
        if path in _UNAUTHENTICATED_PATHS:
            return aiohttp.web.Response(text="ok")
        if path == "/version":
            return aiohttp.web.json_response({
                "major": "1", "minor": "30", "gitVersion": "v1.30.0-fluxrate-sandbox", "gitCommit": "sandbox",
                "gitTreeState": "clean", "buildDate": "2024-04-17T00:00:00Z", "goVersion": "go1.22.2",
                "compiler": "gc", "platform": "linux/amd64"})
        if path == "/":
            paths = {"/api", "/api/v1", "/apis", "/version", "/healthz", "/openapi/v3"}
            for res in self._defs.values():
                if res.group:
                    paths |= {f"/apis/{res.group}", f"/apis/{res.group}/{res.version}"}
            return aiohttp.web.json_response({"paths": sorted(paths)})
        if path == "/api":
            host = raw.host or "127.0.0.1"
            return aiohttp.web.json_response({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": host}]})
        if path == "/api/v1":
            return aiohttp.web.json_response(
                kr.api_resource_list("v1", [r for r in self._defs.values() if r.group == ""]))
        groups = self._groups()
        if path == "/apis":
            return aiohttp.web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                kr.api_group(g, versions) for g, versions in groups.items()]})
        if m := re.fullmatch(r"/apis/([^/]+)", path):
            if m.group(1) not in groups:
                raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
            return aiohttp.web.json_response({"kind": "APIGroup", "apiVersion": "v1",
                                              **kr.api_group(m.group(1), groups[m.group(1)])})
        if m := re.fullmatch(r"/apis/([^/]+)/([^/]+)", path):
            served = [r for r in self._defs.values() if (r.group, r.version) == m.groups()]
            if not served:
                raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
            return aiohttp.web.json_response(kr.api_resource_list(f"{m.group(1)}/{m.group(2)}", served))
        if path == "/openapi/v3":
            gvs = sorted({(r.group, r.version) for r in self._defs.values()})
            return aiohttp.web.json_response({"paths": {
                (f"apis/{g}/{v}" if g else f"api/{v}"): {
                    "serverRelativeURL": f"/openapi/v3/{f'apis/{g}/{v}' if g else f'api/{v}'}?hash={self._rv:016X}"}
                for g, v in gvs}})
        if m := re.fullmatch(r"/openapi/v3/(?:api/(v1)|apis/([^/]+)/([^/]+))", path):
            group, version = ("", "v1") if m.group(1) else (m.group(2), m.group(3))
            served = [r for r in self._defs.values() if (r.group, r.version) == (group, version)]
            if not served:
                raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
            return aiohttp.web.json_response(kr.openapi_v3_document(served))
        raise ApiError(404, "NotFound", "the server could not find the requested resource", {})

    def _groups(self) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for res in self._defs.values():
            if res.group and res.version not in groups.setdefault(res.group, []):
                groups[res.group].append(res.version)
        return groups

    # ------------------------------------------------------------------------------------------------
    # Reading.

    def _selectors(self, res: kr.ResourceDef, query: Any, name: str | None = None) -> Callable[[Obj], bool]:
        try:
            labels = parse_label_selector(query.get("labelSelector"))
            fields = parse_field_selector(query.get("fieldSelector"), res.field_selectors)
            if name is not None:
                fields += parse_field_selector(f"metadata.name={name}", res.field_selectors)
        except SelectorError as e:
            raise bad_request(str(e)) from e
        return lambda obj: labels_match(labels, obj) and fields_match(fields, obj)

    def _select(self, res: kr.ResourceDef, namespace: str | None, query: Any) -> list[Obj]:
        matches = self._selectors(res, query)
        return [o for (ns, _), o in sorted(self._store[res.storage_key].items())
                if (namespace is None or ns == namespace) and matches(o)]

    def _list(self, res: kr.ResourceDef, namespace: str | None, query: Any) -> Obj:
        items = self._select(res, namespace, query)
        meta: Obj = {"resourceVersion": str(self._rv)}
        if query.get("continue"):
            # Pages continue from the last key in the current state (a real server reads a snapshot at the
            # first page's resourceVersion; with etcd compaction that snapshot can also expire: 410).
            try:
                after = tuple(json.loads(base64.urlsafe_b64decode(query["continue"]))["after"])
            except (ValueError, KeyError, TypeError) as e:
                raise bad_request("continue key is not valid: illegal base64 data") from e
            items = [o for o in items if self._store_key(o) > after]
        limit = int(query["limit"]) if str(query.get("limit") or "").isdigit() else 0
        if 0 < limit < len(items):
            meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
            meta["continue"] = base64.urlsafe_b64encode(json.dumps(
                {"after": list(self._store_key(items[-1])), "rv": self._rv}).encode()).decode()
        return {"kind": f"{res.kind}List", "apiVersion": res.api_version, "metadata": meta,
                "items": [self._present(res, o) for o in items]}

    async def _serve_watch(self, raw: aiohttp.web.BaseRequest, res: kr.ResourceDef, namespace: str | None,
                           name: str | None) -> aiohttp.web.StreamResponse:
        query = raw.query
        selected = self._selectors(res, query, name)

        def matches(obj: Obj | None) -> bool:
            return obj is not None and (namespace is None or obj["metadata"].get("namespace") == namespace) \
                and selected(obj)

        since = query.get("resourceVersion") or "0"
        try:
            since_rv = int(since)
            timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds") else None
        except ValueError as e:
            raise bad_request(f"invalid parameter: {e}") from e
        bookmarks = query.get("allowWatchBookmarks") in _TRUE

        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(raw)

        # Synchronously: snapshot (or replay) and subscribe, so no event can slip in between.
        watcher = _Watcher(res.storage_key)
        initial: list[tuple[str, Obj]] = []
        expired = False
        send_initial = query.get("sendInitialEvents") in _TRUE
        if since_rv == 0 or send_initial:
            # Streaming lists (client-go's WatchListClient) get the state as ADDED events, then a bookmark.
            initial = [("ADDED", o) for (ns, _), o in sorted(self._store[res.storage_key].items()) if matches(o)]
            if send_initial:
                initial.append(("BOOKMARK", {"kind": res.kind, "apiVersion": res.api_version, "metadata": {
                    "resourceVersion": str(self._rv), "annotations": {"k8s.io/initial-events-end": "true"}}}))
        elif since_rv < self._history_floor:
            expired = True
        else:
            for event in self._history:
                if event.rv > since_rv and event.key == res.storage_key:
                    translated = self._translate(event, matches)
                    if translated is not None:
                        initial.append(translated)
        if not expired:
            self._watchers.add(watcher)

        as_table = "as=Table" in raw.headers.get("Accept", "")

        def line(kind: str, obj: Obj) -> bytes:
            if as_table and kind in ("ADDED", "MODIFIED", "DELETED"):
                obj = kr.table(res, [obj], obj["metadata"].get("resourceVersion", ""))  # as `kubectl get -w` asks
            return json.dumps({"type": kind, "object": obj}).encode() + b"\n"

        try:
            if expired:
                await response.write(line("ERROR", {
                    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": f"too old resource version: {since_rv} ({self._history_floor + 1})",
                    "reason": "Expired", "code": 410}))
                await response.write_eof()
                return response
            version = raw_version(raw)
            for kind, obj in initial:
                await response.write(line(kind, obj if kind == "BOOKMARK" else self._present(res, obj, version)))
            deadline = time.monotonic() + timeout if timeout is not None else None
            next_bookmark = time.monotonic() + self.bookmark_interval
            while True:
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    break
                wait = min(x for x in (deadline, next_bookmark if bookmarks else None, now + 3600) if x) - now
                try:
                    event = await asyncio.wait_for(watcher.queue.get(), timeout=max(wait, 0))
                except TimeoutError:
                    if bookmarks and time.monotonic() >= next_bookmark:
                        await response.write(line("BOOKMARK", {
                            "kind": res.kind, "apiVersion": res.api_version,
                            "metadata": {"resourceVersion": str(self._rv)}}))
                        next_bookmark = time.monotonic() + self.bookmark_interval
                    continue
                if event is None:  # outage or shutdown: cut the stream
                    if self.faults.outage and raw.transport is not None:
                        raw.transport.close()  # an abrupt disconnect, as when the server dies
                        return response
                    break
                translated = self._translate(event, matches)
                if translated is not None:
                    await response.write(line(translated[0], self._present(res, translated[1], raw_version(raw))))
            await response.write_eof()
        except ConnectionResetError:
            pass
        finally:
            self._watchers.discard(watcher)
        return response

    @staticmethod
    def _translate(event: WatchEvent, matches: Callable[[Obj | None], bool]) -> tuple[str, Obj] | None:
        new_ok, old_ok = matches(event.obj), matches(event.old)
        if event.type == "ADDED":
            return ("ADDED", event.obj) if new_ok else None
        if event.type == "DELETED":
            return ("DELETED", event.obj) if (new_ok or old_ok) else None
        if new_ok and old_ok:
            return ("MODIFIED", event.obj)
        if new_ok:
            return ("ADDED", event.obj)
        if old_ok:
            return ("DELETED", event.obj)
        return None

    # ------------------------------------------------------------------------------------------------
    # Writing.

    def _emit(self, res: kr.ResourceDef, kind: str, obj: Obj, old: Obj | None) -> None:
        if len(self._history) == self._history.maxlen:
            self._history_floor = self._history[0].rv
        event = WatchEvent(self._rv, res.storage_key, kind, copy.deepcopy(obj), old)
        self._history.append(event)
        for watcher in self._watchers:
            if watcher.key == res.storage_key:
                watcher.queue.put_nowait(event)

    def _store_key(self, obj: Obj) -> tuple[str, str]:
        meta = obj["metadata"]
        return (meta.get("namespace") or "", meta["name"])

    def _commit(self, res: kr.ResourceDef, obj: Obj, old: Obj | None) -> Obj:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        if old is not None:
            self._unindex(res, old)
        self._store[res.storage_key][self._store_key(obj)] = obj
        self._index(res, obj)
        self._emit(res, "ADDED" if old is None else "MODIFIED", obj, old)
        return obj

    def _index(self, res: kr.ResourceDef, obj: Obj) -> None:
        where = (res.storage_key, self._store_key(obj))
        self._uids[obj["metadata"]["uid"]] = where
        for ref in obj["metadata"].get("ownerReferences") or []:
            self._dependents[ref.get("uid", "")].add(where)

    def _unindex(self, res: kr.ResourceDef, obj: Obj) -> None:
        where = (res.storage_key, self._store_key(obj))
        self._uids.pop(obj["metadata"]["uid"], None)
        for ref in obj["metadata"].get("ownerReferences") or []:
            dependents = self._dependents.get(ref.get("uid", ""))
            if dependents is not None:
                dependents.discard(where)
                if not dependents:
                    del self._dependents[ref.get("uid", "")]

    def _check_rv(self, res: kr.ResourceDef, old: Obj, body: Any, *, required: bool) -> None:
        if not isinstance(body, dict):
            raise bad_request("the body of the request must be an object")
        rv = (body.get("metadata") or {}).get("resourceVersion")
        if not rv and required:
            name = old["metadata"]["name"]
            # Worded with the resource, not the kind, as the real registry store words it.
            raise ApiError(422, "Invalid", f'{res.qualified} "{name}" is invalid: metadata.resourceVersion: Invalid '
                           "value: 0: must be specified for an update", {**details_for(res, name), "causes": [
                               Cause("metadata.resourceVersion", "FieldValueInvalid",
                                     "Invalid value: 0: must be specified for an update").as_dict()]})
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise conflict(res, old["metadata"]["name"])

    def _namespace_ok(self, res: kr.ResourceDef, namespace: str | None) -> None:
        if not res.namespaced or namespace is None:
            return
        ns_res = self._defs[("", "v1", "namespaces")]
        ns = self._store[ns_res.storage_key].get(("", namespace))
        if ns is None and self.auto_namespaces:
            self.create_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
            return
        if ns is None:
            raise not_found(ns_res, namespace)
        if ns["metadata"].get("deletionTimestamp"):
            raise ApiError(403, "Forbidden", f"unable to create new content in namespace {namespace} because it is "
                           "being terminated", {"name": namespace, "kind": "namespaces"})

    def _create(self, res: kr.ResourceDef, namespace: str | None, body: Any, query: Any) -> tuple[Obj, list[str]]:
        if not isinstance(body, dict):
            raise bad_request("the body of the request must be an object")
        obj: Obj = body
        meta = obj.get("metadata")
        if meta is None:
            meta = obj["metadata"] = {}
        _check_meta(res, meta)
        if meta.get("resourceVersion"):
            # A 500 without a reason on the real server (the registry's BeforeCreate error is not a StatusError).
            raise ApiError(500, "", "resourceVersion should not be set on objects to be created", None)
        if res.namespaced:
            if meta.get("namespace") and namespace and meta["namespace"] != namespace:
                raise bad_request("the namespace of the provided object does not match the namespace sent on the "
                                  "request")
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if obj.get("kind") not in (None, res.kind):
            raise bad_request(f"the kind in the data ({obj.get('kind')}) does not match the expected kind ({res.kind})")
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + "".join(random.choices(_GEN_CHARS, k=5))
        name = meta.get("name") or ""
        causes = []
        if not name:
            causes.append(Cause("metadata.name", "FieldValueRequired", "Required value: name or generateName is "
                                "required"))
        elif not _NAME.match(name) or len(name) > 253:
            causes.append(Cause("metadata.name", "FieldValueInvalid", f'Invalid value: "{name}": a lowercase RFC '
                                "1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and "
                                "must start and end with an alphanumeric character (e.g. 'example.com', regex used "
                                "for validation is "
                                "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"))
        if causes:
            raise invalid(res, name, causes)
        self._namespace_ok(res, namespace)
        obj["apiVersion"], obj["kind"] = res.api_version, res.kind
        for key in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "managedFields", "selfLink"):
            meta.pop(key, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_iso()
        if res.is_custom or res.plural == "customresourcedefinitions":
            meta["generation"] = 1
        if res.status_subresource():
            obj.pop("status", None)
        if "finalizers" in meta and not meta["finalizers"]:
            del meta["finalizers"]
        self._prepare_builtin(res, obj, None)
        warnings = self._schema(res, obj, None, query)
        if self._store_key(obj) in self._store[res.storage_key]:
            raise ApiError(409, "AlreadyExists", f'{res.qualified} "{name}" already exists', details_for(res, name))
        if query.get("dryRun"):
            obj["metadata"]["resourceVersion"] = str(self._rv)
            return obj, warnings
        self._commit(res, obj, None)
        if res.plural == "customresourcedefinitions":
            self._register_crd(obj)
        return obj, warnings

    def _update(self, res: kr.ResourceDef, old: Obj, body: Any, subresource: str | None,
                query: Any) -> tuple[Obj, list[str]]:
        if not isinstance(body, dict):
            raise bad_request("the body of the request must be an object")
        new: Obj = copy.deepcopy(body)
        _check_meta(res, new.get("metadata") or {})
        name = old["metadata"]["name"]
        if (new.get("metadata") or {}).get("name") not in (None, name):
            raise bad_request(f"the name of the object ({new['metadata']['name']}) does not match the name on the "
                              f"URL ({name})")
        if subresource == "status":
            status = new.get("status")
            new = copy.deepcopy(old)
            if status is None:
                new.pop("status", None)
            else:
                new["status"] = status
        elif res.status_subresource():
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        meta: Obj = new.setdefault("metadata", {})
        old_meta: Obj = old["metadata"]
        for key in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "namespace",
                    "name", "generation", "resourceVersion"):
            if key in old_meta:
                meta[key] = old_meta[key]
            else:
                meta.pop(key, None)
        meta.pop("managedFields", None)
        new["apiVersion"], new["kind"] = res.api_version, res.kind
        if old_meta.get("deletionTimestamp"):
            added = [f for f in meta.get("finalizers") or [] if f not in (old_meta.get("finalizers") or [])]
            if added:
                raise invalid(res, name, [Cause("metadata.finalizers", "FieldValueForbidden",
                                                "Forbidden: no new finalizers can be added if the object is being "
                                                f'deleted, found new finalizers []string{{"{added[0]}"}}')])
        if "finalizers" in meta and not meta["finalizers"]:
            del meta["finalizers"]
        self._prepare_builtin(res, new, old)
        warnings = self._schema(res, new, old, query)
        if "generation" in old_meta and _without(new, "metadata", "status") != _without(old, "metadata", "status"):
            meta["generation"] = old_meta["generation"] + 1
        if new == old:
            return old, warnings  # a no-op: no new resourceVersion, no watch event
        if query.get("dryRun"):
            return new, warnings
        self._commit(res, new, old)
        if res.plural == "customresourcedefinitions":
            self._register_crd(new)
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._remove(res, new)
        return new, warnings

    async def _patch(self, raw: aiohttp.web.BaseRequest, res: kr.ResourceDef, namespace: str | None,
                     parsed: ParsedPath, query: Any) -> tuple[Obj, list[str], int]:
        content_type = raw.headers.get("Content-Type", "").split(";")[0].strip()
        accepted = "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
        if not res.is_custom:
            accepted += ", application/strategic-merge-patch+json"
        if content_type not in accepted.split(", "):
            raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - "
                           f"accepted media types include: {accepted}", {})
        patch = await self._body(raw)
        old = self._store[res.storage_key].get((namespace or "", parsed.name or ""))
        if content_type == "application/apply-patch+yaml":
            # Server-side apply, approximated: create if absent, else a merge patch (no managedFields).
            if old is None:
                if not isinstance(patch, dict):
                    raise bad_request("the body of the request must be an object")
                patch.setdefault("metadata", {}).setdefault("name", parsed.name)
                created, warnings = self._create(res, namespace, patch, query)
                return created, warnings, 201
            content_type = "application/merge-patch+json"
        if old is None:
            raise not_found(res, parsed.name or "")
        name = old["metadata"]["name"]
        if content_type == "application/json-patch+json":
            if not isinstance(patch, list):
                raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
            patched = copy.deepcopy(old)
            for op in patch:
                if not isinstance(op, dict) or op.get("op") not in _JSON_PATCH_OPS or "path" not in op:
                    logger.debug("JSON patch operation %r is not one", op)
                    raise _patch_rejected()
                try:
                    patched = jsonpatch.apply_patch(patched, [op])
                except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, KeyError, IndexError,
                        TypeError, AttributeError) as e:
                    logger.debug("JSON patch %r failed on %s: %s", op, name, e)
                    raise _patch_rejected() from e
            if not isinstance(patched, dict):
                raise bad_request("the patched object must be an object")
            rv = (patched.get("metadata") or {}).get("resourceVersion")
        else:
            if not isinstance(patch, dict):
                raise bad_request("the body of the request must be an object")
            rv = (patch.get("metadata") or {}).get("resourceVersion")
            if content_type == "application/strategic-merge-patch+json":
                try:
                    patched = strategic_merge_patch(old, patch)
                except PatchError as e:
                    raise ApiError(500, "", str(e), None) from e
            else:
                patched = merge_patch(old, patch)
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise conflict(res, name)
        if isinstance(patched.get("metadata"), dict):
            patched["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        updated, warnings = self._update(res, old, patched, parsed.subresource, query)
        return updated, warnings, 200

    def _delete(self, res: kr.ResourceDef, old: Obj, options: Any, query: Any) -> Obj:
        name = old["metadata"]["name"]
        if not isinstance(options, dict):
            raise bad_request("the body of the request must be DeleteOptions")
        preconditions = options.get("preconditions") or {}
        if preconditions.get("uid") and preconditions["uid"] != old["metadata"]["uid"]:
            raise conflict(res, name, f"Precondition failed: UID in precondition: {preconditions['uid']}, "
                                      f"UID in object meta: {old['metadata']['uid']}")
        if preconditions.get("resourceVersion") and preconditions["resourceVersion"] != old["metadata"][
                "resourceVersion"]:
            raise conflict(res, name, f"Precondition failed: ResourceVersion in precondition: "
                                      f"{preconditions['resourceVersion']}, ResourceVersion in object meta: "
                                      f"{old['metadata']['resourceVersion']}")
        orphan = (options.get("propagationPolicy") or query.get("propagationPolicy")) == "Orphan" \
            or options.get("orphanDependents") is True
        if query.get("dryRun") or options.get("dryRun"):
            return old
        if old["metadata"].get("deletionTimestamp"):
            return old
        if old["metadata"].get("finalizers") or res.plural == "namespaces":
            new = copy.deepcopy(old)
            new["metadata"]["deletionTimestamp"] = now_iso()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            if res.plural == "namespaces":
                new.setdefault("status", {})["phase"] = "Terminating"
            self._commit(res, new, old)
            if res.plural == "namespaces":
                # The namespace controller empties the namespace a moment later, not within this request.
                try:
                    asyncio.get_running_loop().call_later(self.namespace_cleanup_delay, self._terminate_namespace, name)
                except RuntimeError:
                    self._terminate_namespace(name)
            return new
        return self._remove(res, old, orphan=orphan)

    def _remove(self, res: kr.ResourceDef, obj: Obj, orphan: bool = False) -> Obj:
        key = self._store_key(obj)
        if self._store[res.storage_key].get(key) is None:
            return obj
        del self._store[res.storage_key][key]
        self._unindex(res, obj)
        self._rv += 1
        final = copy.deepcopy(obj)
        final["metadata"]["resourceVersion"] = str(self._rv)
        self._emit(res, "DELETED", final, obj)
        if res.plural == "customresourcedefinitions":
            self._unregister_crd(obj)
        if not orphan:
            self._collect_garbage(obj["metadata"]["uid"])
        namespace = obj["metadata"].get("namespace")
        if namespace:
            self._maybe_finish_namespace(namespace)
        return final

    def _collect_garbage(self, owner_uid: str) -> None:
        by_storage = {res.storage_key: res for res in self._defs.values()}
        for storage_key, key in sorted(self._dependents.get(owner_uid, set())):
            obj = self._store[storage_key].get(key)
            res = by_storage.get(storage_key)
            if obj is None or res is None:
                continue  # already removed by a nested collection
            refs = obj["metadata"].get("ownerReferences") or []
            remaining = [ref for ref in refs if ref.get("uid") != owner_uid]
            if any(ref.get("uid") in self._uids for ref in remaining):
                new = copy.deepcopy(obj)
                new["metadata"]["ownerReferences"] = remaining
                self._commit(res, new, obj)
            else:
                self._delete(res, obj, {}, {})

    def _terminate_namespace(self, namespace: str) -> None:
        for res in list(self._defs.values()):
            if res.namespaced:
                for (ns, _), obj in list(self._store[res.storage_key].items()):
                    if ns == namespace:
                        self._delete(res, obj, {}, {})
        self._maybe_finish_namespace(namespace)

    def _maybe_finish_namespace(self, namespace: str) -> None:
        ns_res = self._defs[("", "v1", "namespaces")]
        ns = self._store[ns_res.storage_key].get(("", namespace))
        if ns is None or not ns["metadata"].get("deletionTimestamp"):
            return
        for res in self._defs.values():
            if res.namespaced and any(k[0] == namespace for k in self._store[res.storage_key]):
                return
        self._remove(ns_res, ns)

    # ------------------------------------------------------------------------------------------------
    # Type-specific behaviour.

    def _prepare_builtin(self, res: kr.ResourceDef, obj: Obj, old: Obj | None) -> None:
        if res.group == "" and res.plural == "secrets":
            string_data = obj.pop("stringData", None) or {}
            if string_data:
                data = obj.setdefault("data", {}) or {}
                obj["data"] = data
                for key, value in string_data.items():
                    data[key] = base64.b64encode(str(value).encode()).decode()
            obj.setdefault("type", old.get("type", "Opaque") if old else "Opaque")
            if old is not None and old.get("type") != obj["type"]:
                message = f'Invalid value: "{obj["type"]}": field is immutable'
                raise invalid(res, obj["metadata"]["name"], [Cause("type", "FieldValueInvalid", message)])
        elif res.group == "" and res.plural == "namespaces":
            obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
            obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
            if old is None:
                obj["status"] = {"phase": "Active"}
        elif res.plural == "customresourcedefinitions":
            self._validate_crd(res, obj)
            if old is not None:
                obj["status"] = old.get("status", {})

    def _validate_crd(self, res: kr.ResourceDef, crd: Obj) -> None:
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        name = crd["metadata"]["name"]
        causes = []
        for key in ("plural", "kind"):
            if not names.get(key):
                causes.append(Cause(f"spec.names.{key}", "FieldValueRequired", "Required value"))
        if not spec.get("group"):
            causes.append(Cause("spec.group", "FieldValueRequired", "Required value"))
        if not spec.get("versions"):
            causes.append(Cause("spec.versions", "FieldValueInvalid", "Invalid value: \"null\": must have exactly "
                                "one version marked as storage version"))
        if not causes and name != f"{names['plural']}.{spec['group']}":
            causes.append(Cause("metadata.name", "FieldValueInvalid",
                                f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group'))
        if causes:
            raise invalid(res, name, causes)

    def _register_crd(self, crd: Obj) -> None:
        self._unregister_crd(crd, keep_objects=True)
        for res in kr.resources_from_crd(crd):
            self._defs[(res.group, res.version, res.plural)] = res
        names = crd["spec"]["names"]
        accepted = {"plural": names["plural"], "singular": names.get("singular") or names["kind"].lower(),
                    "kind": names["kind"], "listKind": names.get("listKind") or f"{names['kind']}List"}
        for key in ("shortNames", "categories"):
            if names.get(key):
                accepted[key] = names[key]
        stamp = now_iso()
        status = {
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                 "message": "no conflicts found", "lastTransitionTime": stamp},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                 "message": "the initial names have been accepted", "lastTransitionTime": stamp},
            ],
            "acceptedNames": accepted,
            "storedVersions": [kr.storage_version(crd)],
        }
        old_status = crd.get("status") or {}
        if old_status.get("acceptedNames") == accepted and old_status.get("conditions"):
            return
        res = self._defs[("apiextensions.k8s.io", "v1", "customresourcedefinitions")]
        current = self._store[res.storage_key][("", crd["metadata"]["name"])]
        new = copy.deepcopy(current)
        new["status"] = status
        self._commit(res, new, current)

    def _unregister_crd(self, crd: Obj, keep_objects: bool = False) -> None:
        crd_name = crd["metadata"]["name"]
        removed = [key for key, res in self._defs.items() if res.crd_name == crd_name]
        for key in removed:
            res = self._defs.pop(key)
            if not keep_objects and not any(r.storage_key == res.storage_key for r in self._defs.values()):
                for obj in list(self._store[res.storage_key].values()):
                    self._remove(res, obj)

    def _schema(self, res: kr.ResourceDef, obj: Obj, old: Obj | None, query: Any) -> list[str]:
        if res.schema is None or res.validator is None:
            return []
        name = obj["metadata"].get("name", "")
        unknown: list[str] = []
        prune(obj, res.schema, root=True, pruned=unknown)
        mode = query.get("fieldValidation") or "Warn"
        if unknown and mode == "Strict":
            fields = ", ".join(f'unknown field "{u}"' for u in unknown)
            raise bad_request(f'{res.kind} in version "{res.version}" cannot be handled as a {res.kind}: '
                              f"strict decoding error: {fields}")
        apply_defaults(obj, res.schema, root=True)
        causes = res.validator.validate(obj, old)
        causes += _cel_causes(res, obj, old, causes)
        if causes:
            raise invalid(res, name, causes)
        return [f'unknown field "{u}"' for u in unknown] if mode == "Warn" else []


def _cel_causes(res: kr.ResourceDef, obj: Obj, old: Obj | None, schema_causes: list[Cause]) -> list[Cause]:
    """CEL rules run after the schema unless its errors are blocking; then one cause says so (as the real server)."""
    if res.cel is None or res.schema is None or not res.cel.declared:
        return []
    if any(c.reason in _BLOCKING_REASONS for c in schema_causes):
        return [Cause("", "FieldValueInvalid", "Invalid value: null: some validation rules were not checked "
                      "because the object was invalid; correct the existing errors to complete validation")]
    return res.cel.validate(res.schema, _cel_view(obj), _cel_view(old) if old is not None else None)


def _patch_rejected() -> ApiError:
    """The real server answers every unusable JSON patch (unknown op, failed "test", bad path) with this generic
    422 (NewGenericServerResponse): the JSON-patch error text is not returned."""
    return ApiError(422, "Invalid", "the server rejected our request due to an error in our request", {})


def _deletion_pending(res: kr.ResourceDef, obj: Obj) -> bool:
    """Finalizers (or a namespace's cleanup) still hold the object: DELETE returns it, else a Status."""
    meta = obj["metadata"]
    return bool(meta.get("deletionTimestamp")) and (bool(meta.get("finalizers")) or res.plural == "namespaces")


def raw_version(raw: aiohttp.web.BaseRequest) -> str | None:
    return parse_path(raw.path).version


def _check_meta(res: kr.ResourceDef, meta: Any) -> None:
    """Shapes the real server's decoder refuses (400) before any validation runs."""
    problem = None
    if not isinstance(meta, dict):
        problem = "metadata must be an object"
    else:
        for key, container, go_type in (("labels", dict, "map[string]string"),
                                        ("annotations", dict, "map[string]string"), ("finalizers", list, "[]string")):
            value = meta.get(key)
            if value is None:
                continue
            if not isinstance(value, container):
                problem = _unmarshal_error(value, key, go_type)
            elif bad := [v for v in (value.values() if isinstance(value, dict) else value) if not isinstance(v, str)]:
                problem = _unmarshal_error(bad[0], key, "string")
    if problem is not None:
        raise bad_request(f"{res.kind} in version \"{res.version}\" cannot be handled as a {res.kind}: {problem}")


def _unmarshal_error(value: Any, key: str, go_type: str) -> str:
    """encoding/json's UnmarshalTypeError text, as the real server's decoder reports it."""
    json_type = ("bool" if isinstance(value, bool) else "number" if isinstance(value, int | float)
                 else "object" if isinstance(value, dict) else "array" if isinstance(value, list) else "string")
    return f"json: cannot unmarshal {json_type} into Go struct field ObjectMeta.{key} of type {go_type}"


def _cel_view(obj: Obj) -> Obj:
    """What CEL's root ``self`` sees: as in Kubernetes, of metadata only name and generateName."""
    meta = obj.get("metadata") or {}
    return {**obj, "metadata": {k: meta[k] for k in ("name", "generateName") if k in meta}}
