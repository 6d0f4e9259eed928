"""List/watch semantics (on the emulator and the real API server) and the emulator's fault injection."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from typing import Any

import aiohttp
import pytest

from fluxrate_sandbox.kube_server import KubeSandbox
from tests.sandbox.conftest import Backend, widget

MERGE = {"Content-Type": "application/merge-patch+json"}


async def create(api: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> dict[str, Any]:
    async with api.post(url, json=body) as response:
        assert response.status == 201
        return await response.json()


async def patch(api: aiohttp.ClientSession, url: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
    async with api.patch(f"{url}/{name}", json=body, headers=MERGE) as response:
        assert response.status == 200
        return await response.json()


async def collect(api: aiohttp.ClientSession, url: str, params: dict[str, str], *, count: int | None = None,
                  timeout: float = 5) -> list[dict[str, Any]]:
    """Read watch events until `count` events arrived or the server ends the stream."""
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout), api.get(url, params={"watch": "true", **params}) as response:
        assert response.status == 200
        async for line in response.content:
            events.append(json.loads(line))
            if count is not None and len(events) >= count:
                break
    return events


async def current_resource_version(api: aiohttp.ClientSession, url: str) -> str:
    async with api.get(url) as response:
        return str((await response.json())["metadata"]["resourceVersion"])


def summary(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["type"], e["object"]["metadata"].get("name", "")) for e in events]


async def test_list_carries_kind_and_resource_version(api: aiohttp.ClientSession, widgets: str) -> None:
    created = await create(api, widgets, widget("a"))
    async with api.get(widgets) as response:
        listing = await response.json()
    assert listing["kind"] == "WidgetList" and listing["apiVersion"] == "test.fluxrate.co/v1"
    assert int(listing["metadata"]["resourceVersion"]) >= int(created["metadata"]["resourceVersion"])
    assert [i["metadata"]["name"] for i in listing["items"]] == ["a"]
    assert listing["items"][0]["kind"] == "Widget"


async def test_list_pagination_with_limit_and_continue(api: aiohttp.ClientSession,
                                                       widgets: str) -> None:
    for name in "abcde":
        await create(api, widgets, widget(name))
    names: list[str] = []
    params = {"limit": "2"}
    pages = 0
    while True:
        async with api.get(widgets, params=params) as response:
            page = await response.json()
        pages += 1
        names += [i["metadata"]["name"] for i in page["items"]]
        if not page["metadata"].get("continue"):
            break
        params = {"limit": "2", "continue": page["metadata"]["continue"]}
    assert names == list("abcde") and pages == 3


async def test_watch_without_version_starts_with_existing_objects(api: aiohttp.ClientSession,
                                                                  widgets: str) -> None:
    await create(api, widgets, widget("a"))
    await create(api, widgets, widget("b"))
    events = await collect(api, widgets, {}, count=2)
    assert summary(events) == [("ADDED", "a"), ("ADDED", "b")]


async def test_streaming_list_ends_initial_events_with_a_bookmark(api: aiohttp.ClientSession,
                                                                  widgets: str) -> None:
    created = await create(api, widgets, widget("a"))
    events = await collect(api, widgets, {"sendInitialEvents": "true", "resourceVersionMatch": "NotOlderThan",
                                 "allowWatchBookmarks": "true"}, count=2)
    assert summary(events) == [("ADDED", "a"), ("BOOKMARK", "")]
    bookmark = events[1]["object"]["metadata"]
    assert bookmark == {"resourceVersion": bookmark["resourceVersion"],
                        "annotations": {"k8s.io/initial-events-end": "true"}}
    assert int(bookmark["resourceVersion"]) >= int(created["metadata"]["resourceVersion"])


async def test_watch_resumes_after_a_resource_version(api: aiohttp.ClientSession,
                                                      widgets: str) -> None:
    first = await create(api, widgets, widget("a"))
    await patch(api, widgets, "a", {"spec": {"size": 5}})
    await create(api, widgets, widget("b"))
    async with api.delete(f"{widgets}/a") as response:
        assert response.status == 200
    events = await collect(api, widgets, {"resourceVersion": first["metadata"]["resourceVersion"]}, count=3)
    assert summary(events) == [("MODIFIED", "a"), ("ADDED", "b"), ("DELETED", "a")]
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(versions) and versions[0] > int(first["metadata"]["resourceVersion"])


async def test_watch_streams_live_changes(api: aiohttp.ClientSession, widgets: str) -> None:
    async with api.get(widgets) as response:
        rv = (await response.json())["metadata"]["resourceVersion"]
    watching = asyncio.create_task(collect(api, widgets, {"resourceVersion": rv}, count=2))
    await asyncio.sleep(0.2)
    await create(api, widgets, widget("live"))
    await patch(api, widgets, "live", {"metadata": {"labels": {"x": "y"}}})
    assert summary(await watching) == [("ADDED", "live"), ("MODIFIED", "live")]


@pytest.mark.emulator_only  # the history_size knob (the real watch cache keeps a time window instead)
async def test_too_old_resource_version_is_410_expired(tmp_path: Any, kube: Backend, widgets: str) -> None:
    from tests.sandbox.conftest import WIDGET_CRD

    async with KubeSandbox(state_dir=tmp_path / "small", history_size=3) as small, small.client() as api:
        small.apply_crd(copy.deepcopy(WIDGET_CRD))
        first = await create(api, widgets, widget("a"))
        for size in range(2, 8):
            await patch(api, widgets, "a", {"spec": {"size": size}})
        events = await collect(api, widgets, {"resourceVersion": first["metadata"]["resourceVersion"]})
        assert len(events) == 1 and events[0]["type"] == "ERROR"
        status = events[0]["object"]
        assert status["code"] == 410 and status["reason"] == "Expired"
        assert status["message"].startswith("too old resource version:")


async def test_label_selectors_on_list_and_watch(api: aiohttp.ClientSession, widgets: str) -> None:
    for name, labels in [("a", {"tier": "gold", "env": "prod"}), ("b", {"tier": "silver"}), ("c", {})]:
        await create(api, widgets, {**widget(name), "metadata": {"name": name, "labels": labels}})

    async def names(selector: str) -> list[str]:
        async with api.get(widgets, params={"labelSelector": selector}) as response:
            return [i["metadata"]["name"] for i in (await response.json())["items"]]

    assert await names("tier=gold") == ["a"]
    assert await names("tier==silver") == ["b"]
    assert await names("tier!=gold") == ["b", "c"]
    assert await names("tier in (gold,silver)") == ["a", "b"]
    assert await names("tier notin (gold)") == ["b", "c"]
    assert await names("tier") == ["a", "b"]
    assert await names("!tier") == ["c"]
    assert await names("tier in (gold, silver),env=prod") == ["a"]
    async with api.get(widgets, params={"labelSelector": "tier in gold"}) as response:
        assert response.status == 400

    # A watch with a selector sees objects entering and leaving the selection as ADDED/DELETED.
    async with api.get(widgets) as response:
        rv = (await response.json())["metadata"]["resourceVersion"]
    watching = asyncio.create_task(collect(api, widgets, {"resourceVersion": rv, "labelSelector": "tier=gold"},
                                           count=3))
    await asyncio.sleep(0.2)
    await patch(api, widgets, "c", {"metadata": {"labels": {"tier": "gold"}}})
    await patch(api, widgets, "c", {"spec": {"size": 9}})
    await patch(api, widgets, "a", {"metadata": {"labels": {"tier": None}}})
    assert summary(await watching) == [("ADDED", "c"), ("MODIFIED", "c"), ("DELETED", "a")]


async def test_field_selectors(api: aiohttp.ClientSession, kube: Backend, widgets: str) -> None:
    await create(api, widgets, widget("a"))
    await create(api, widgets, widget("b"))
    async with api.get("/apis/test.fluxrate.co/v1/widgets", params={"fieldSelector": "metadata.name=b"}) as response:
        assert [i["metadata"]["name"] for i in (await response.json())["items"]] == ["b"]
    async with api.get("/apis/test.fluxrate.co/v1/widgets",
                       params={"fieldSelector": f"metadata.namespace!={kube.namespace}"}) as response:
        assert (await response.json())["items"] == []
    await create(api, widgets, {**widget("c"), "spec": {"currency": "EUR"}})
    async with api.get(widgets, params={"fieldSelector": "spec.currency=EUR"}) as response:  # selectableFields
        assert [i["metadata"]["name"] for i in (await response.json())["items"]] == ["c"]
    async with api.get(widgets, params={"fieldSelector": "spec.size=3"}) as response:
        assert response.status == 400
        assert (await response.json())["message"] == "field label not supported: spec.size"
    events = await collect(api, widgets, {"fieldSelector": "metadata.name=b"}, count=1)
    assert summary(events) == [("ADDED", "b")]


async def test_timeout_seconds_ends_the_stream(api: aiohttp.ClientSession, widgets: str) -> None:
    rv = await current_resource_version(api, widgets)
    start = time.monotonic()
    events = await collect(api, widgets, {"timeoutSeconds": "1", "resourceVersion": rv})
    assert events == []
    assert 0.9 <= time.monotonic() - start < 3


# The bookmark_interval knob: the real server sends bookmarks when its watch cache decides (best effort, as the
# API documents them; none came within 10 s of an idle resource), so they cannot be awaited there.
@pytest.mark.emulator_only
async def test_bookmarks_carry_the_current_resource_version(api: aiohttp.ClientSession, kube: Backend,
                                                            widgets: str) -> None:
    created = await create(api, widgets, widget("a"))
    rv = created["metadata"]["resourceVersion"]
    events = await collect(api, widgets, {"allowWatchBookmarks": "true", "resourceVersion": rv, "timeoutSeconds": "1"})
    bookmarks = [e for e in events if e["type"] == "BOOKMARK"]
    assert bookmarks, events
    assert int(bookmarks[-1]["object"]["metadata"]["resourceVersion"]) >= int(rv)
    assert bookmarks[-1]["object"]["kind"] == "Widget"
    without = await collect(api, widgets, {"resourceVersion": rv, "timeoutSeconds": "1"})
    assert without == []


@pytest.mark.emulator_only  # fault knob
async def test_fail_next_targets_specific_requests(api: aiohttp.ClientSession, kube: Backend,
                                                   widgets: str) -> None:
    await create(api, widgets, widget("a"))
    rule = kube.sandbox.faults.fail_next(1, status=500, verb="patch", resource="widgets", subresource="status")
    async with api.patch(f"{widgets}/a", json={"spec": {"size": 4}}, headers=MERGE) as response:
        assert response.status == 200  # the main resource is not targeted
    async with api.patch(f"{widgets}/a/status", json={"status": {"phase": "Ready"}}, headers=MERGE) as response:
        assert response.status == 500
        assert (await response.json())["reason"] == "InternalError"
    async with api.patch(f"{widgets}/a/status", json={"status": {"phase": "Ready"}}, headers=MERGE) as response:
        assert response.status == 200
    assert rule.hits == 1

    kube.sandbox.faults.fail_next(2, status=429, retry_after=1)
    for _ in range(2):
        async with api.get(widgets) as response:
            assert response.status == 429 and response.headers["Retry-After"] == "1"
    async with api.get(widgets) as response:
        assert response.status == 200


@pytest.mark.emulator_only  # fault knob
async def test_a_fault_can_let_the_first_matching_requests_through(api: aiohttp.ClientSession, kube: Backend,
                                                                     widgets: str) -> None:
    await create(api, widgets, widget("a"))
    rule = kube.sandbox.faults.fail_always(503, verb="patch", resource="widgets", subresource="status", after=2)
    statuses = []
    for phase in ("Pending", "Ready", "Pending", "Ready"):
        async with api.patch(f"{widgets}/a/status", json={"status": {"phase": phase}}, headers=MERGE) as response:
            statuses.append(response.status)
    assert statuses == [200, 200, 503, 503]
    assert (rule.passed, rule.hits) == (2, 2)


@pytest.mark.emulator_only  # fault knob
async def test_outage_fails_requests_and_cuts_watches(api: aiohttp.ClientSession, kube: Backend,
                                                      widgets: str) -> None:
    await create(api, widgets, widget("a"))

    async def watch_until_cut() -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        try:
            async with api.get(widgets, params={"watch": "true"}) as response:
                async for line in response.content:
                    events.append(json.loads(line))
        except aiohttp.ClientError:
            events.append({"type": "CUT"})
        return events

    watching = asyncio.create_task(watch_until_cut())
    await asyncio.sleep(0.2)
    kube.sandbox.faults.outage = True
    events = await asyncio.wait_for(watching, 5)
    assert events[0]["type"] == "ADDED"
    async with api.get(widgets) as response:
        assert response.status == 503
    kube.sandbox.faults.outage = False
    async with api.get(widgets) as response:
        assert response.status == 200


@pytest.mark.emulator_only  # fault knob
@pytest.mark.parametrize("latency", [0.2])
async def test_latency_knob(api: aiohttp.ClientSession, kube: Backend, latency: float) -> None:
    kube.sandbox.faults.latency = latency
    start = time.monotonic()
    async with api.get("/api/v1/namespaces") as response:
        assert response.status == 200
    assert time.monotonic() - start >= latency


async def test_table_watch_for_kubectl_get_w(api: aiohttp.ClientSession, widgets: str) -> None:
    await create(api, widgets, widget("a", size=2))
    headers = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}
    async with asyncio.timeout(5), api.get(widgets, params={"watch": "true"}, headers=headers) as response:
        event = json.loads(await response.content.readline())
    assert event["type"] == "ADDED" and event["object"]["kind"] == "Table"
    assert event["object"]["rows"][0]["cells"] == ["a", None, None, 2]


async def test_subresources_only_take_get_update_patch(api: aiohttp.ClientSession,
                                                       widgets: str) -> None:
    await create(api, widgets, widget("a"))
    async with api.delete(f"{widgets}/a/status") as response:
        assert response.status == 405
    async with api.get(f"{widgets}/a") as response:
        assert response.status == 200
