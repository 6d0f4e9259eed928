"""fluxrate.operator.sharding: the namespace -> shard hash, the shard settings, and the filter in front of kopf."""

from __future__ import annotations

import asyncio
import contextvars
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kopf._cogs.clients import watching
from kopf._cogs.structs.references import Resource

from fluxrate import API_GROUP, API_VERSION
from fluxrate.operator import sharding
from fluxrate.operator.sharding import Shard, shard_of

INVOICES = Resource(API_GROUP, API_VERSION, "invoices", namespaced=True)
PEERINGS = Resource("kopf.dev", "v1", "kopfpeerings", namespaced=True)


def test_the_hash_is_fixed_across_processes_and_releases() -> None:
    # blake2b of the name, never Python's salted hash(): these values may never change (a change is a reshard)
    names = ("default", "team-a", "team-b", "billing")
    assert [shard_of(ns, 3) for ns in names] == [0, 0, 1, 2]
    assert [shard_of(ns, 4) for ns in names] == [2, 2, 3, 1]
    assert all(shard_of(ns, 1) == 0 for ns in ("default", "team-a"))


def test_known_values() -> None:
    import hashlib

    digest = int.from_bytes(hashlib.blake2b(b"team-a", digest_size=8).digest(), "big")
    assert shard_of("team-a", 7) == digest % 7


@pytest.mark.parametrize("count", [2, 3, 4])
def test_namespaces_spread_evenly(count: int) -> None:
    spread = Counter(shard_of(f"tenant-{i}", count) for i in range(3000))
    assert sorted(spread) == list(range(count))
    assert max(spread.values()) / min(spread.values()) < 1.2


@pytest.mark.parametrize(("index", "count"), [(0, 0), (3, 3), (-1, 2), (0, 65)])
def test_a_shard_outside_its_count_is_refused(index: int, count: int) -> None:
    with pytest.raises(ValueError, match="shard"):
        Shard(index, count)


def test_exactly_one_shard_owns_each_namespace() -> None:
    for ns in ("a", "b", "team-x", "x" * 63):
        assert sum(Shard(i, 5).owns(ns) for i in range(5)) == 1
    assert all(Shard(i, 5).owns(None) for i in range(5))  # cluster-scoped objects: everyone's


def event(namespace: str, name: str = "x") -> dict[str, Any]:
    return {"type": "ADDED", "object": {"metadata": {"namespace": namespace, "name": name, "uid": name}}}


async def _collect(resource: Resource, events: list[Any], shard: Shard | None) -> list[Any]:
    async def original(**_: Any) -> AsyncIterator[Any]:
        for raw in events:
            yield raw

    filtered = sharding._filtered(original)
    if shard is not None:
        sharding._current.set(shard)
    return [raw async for raw in filtered(settings=None, resource=resource, namespace=None)]


def test_the_filter_passes_only_own_namespaces_of_sharded_resources() -> None:
    namespaces = [f"ns-{i}" for i in range(40)]
    events = [*(event(ns) for ns in namespaces), watching.Bookmark.LISTED]
    shard = Shard(1, 3)
    seen = asyncio.run(_collect(INVOICES, events, shard))
    assert seen[-1] is watching.Bookmark.LISTED  # the end of the listing always passes
    assert [e["object"]["metadata"]["namespace"] for e in seen[:-1]] == [ns for ns in namespaces if shard.owns(ns)]
    # other resources (kopf's peering) and an operator without a shard see everything
    assert asyncio.run(_collect(PEERINGS, events, shard)) == events
    assert contextvars.copy_context().run(lambda: asyncio.run(_collect(INVOICES, events, None))) == events


def test_one_shard_installs_nothing() -> None:
    before = watching.infinite_watch
    contextvars.copy_context().run(sharding.install, Shard(0, 1))
    assert watching.infinite_watch is before
    assert sharding.current() is None


def test_a_kopf_without_the_hook_refuses_to_start_sharded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A filter that silently stopped filtering would let every shard act on every namespace."""
    async def moved(*, settings: Any, namespace: Any) -> AsyncIterator[Any]:  # no ``resource``: kopf changed
        yield None

    monkeypatch.setattr(watching, "infinite_watch", moved)
    with pytest.raises(sharding.ShardingUnsupported, match="install the kopf version fluxrate pins"):
        contextvars.copy_context().run(sharding.install, Shard(0, 2))
    assert watching.infinite_watch is moved
