"""Sharding: several operator processes serve disjoint sets of namespaces of one cluster at once.

A namespace belongs to shard ``blake2b(namespace) mod count``: a fixed hash, the same in every process, Python
version and restart (never Python's salted ``hash()``). A StripeIntegration, its invoices and its Secrets share
their namespace, so one shard owns them all. Each shard is an ordinary kopf operator (its own Deployment, its own
kopf peering for HA) that does not see the other namespaces at all.

Why the filter sits in front of kopf rather than in ``when=`` filters on the handlers: kopf removes its finalizer
from every object that no handler of the operator matches (``processing.process_resource_causes``: "Removing the
finalizer, as there are no handlers requiring it"). With one finalizer name for all shards, every other shard
would strip the owner's finalizer, and the owner add it back, forever; with one finalizer name per shard, a
reshard would leave finalizers nobody removes, and a moment with none (a deletion then skips the link's
deactivation). Dropping the other namespaces' watch events before kopf sees them is what a namespaced kopf
operator does: the objects keep one finalizer, one progress and one diff-base, and a reshard hands a namespace
over exactly as an operator restart does. It also divides kopf's own per-object memory, the event processing
and the handlers' per-invoice state (schedule, waiting, metrics), which are all fed by these events.

kopf offers no public hook at that point: ``install`` wraps ``kopf._cogs.clients.watching.infinite_watch``
(queueing's source of raw events), once per process, and each operator's shard is a context variable, so
operators with different shards (tests) can share a process. One shard (the default) installs nothing.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import inspect
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from fluxrate import API_GROUP

SHARDED_RESOURCES = frozenset({(API_GROUP, "stripeintegrations"), (API_GROUP, "invoices"), ("", "secrets")})
MAX_SHARDS = 64  # the chart's values.schema.json says the same

logger = logging.getLogger(__name__)


def shard_of(namespace: str, count: int) -> int:
    """The shard (0 <= shard < count) that owns ``namespace``: stable across processes and releases."""
    if count <= 1:
        return 0
    digest = hashlib.blake2b(namespace.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


@dataclass(frozen=True)
class Shard:
    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_SHARDS:
            raise ValueError(f"the shard count must be between 1 and {MAX_SHARDS}, not {self.count}")
        if not 0 <= self.index < self.count:
            raise ValueError(f"the shard index must be at least 0 and less than the shard count ({self.count}), "
                             f"not {self.index}")

    @property
    def sharded(self) -> bool:
        return self.count > 1

    def owns(self, namespace: str | None) -> bool:
        """Cluster-scoped objects (no namespace) are every shard's."""
        return namespace is None or shard_of(namespace, self.count) == self.index

    def __str__(self) -> str:
        return f"shard {self.index} of {self.count}"


_current: contextvars.ContextVar[Shard | None] = contextvars.ContextVar("fluxrate_shard", default=None)


def current() -> Shard | None:
    return _current.get()


def install(shard: Shard) -> None:
    """Make the kopf operator started next in this context see only ``shard``'s namespaces (no-op unsharded).

    Call it in the task that then starts ``kopf.operator``: kopf's tasks inherit the context."""
    if not shard.sharded:
        return
    watching = _hook_point()
    if not getattr(watching.infinite_watch, "fluxrate_sharded", False):
        watching.infinite_watch = _filtered(watching.infinite_watch)
    _current.set(shard)
    logger.info("Serving %s: only namespaces whose blake2b hash mod %d is %d.", shard, shard.count, shard.index)


class ShardingUnsupported(RuntimeError):
    """The installed kopf no longer streams watch events the way the shard filter expects."""


def _hook_point() -> ModuleType:
    """kopf's watching module, once it is checked that kopf still reads its events through it.

    A filter that silently stopped filtering would let every shard act on every namespace, so a kopf whose
    internals moved refuses to start sharded instead."""
    import kopf
    from kopf._cogs.clients import watching  # kopf's internals: imported only when sharded
    from kopf._core.reactor import queueing

    stream = getattr(watching, "infinite_watch", None)
    parameters = inspect.signature(stream).parameters if callable(stream) else {}
    if "resource" not in parameters or getattr(queueing, "watching", None) is not watching:
        raise ShardingUnsupported(
            f"operator.shards > 1 needs kopf's watch-stream hook (kopf._cogs.clients.watching.infinite_watch, "
            f"read by kopf._core.reactor.queueing), which kopf {kopf.__version__} does not have: install the kopf "
            f"version fluxrate pins (pyproject.toml) or run one shard")
    return watching


def _namespace(raw_event: Any) -> str | None:
    if not isinstance(raw_event, dict):
        return None  # kopf's bookmarks (the listing is over): every shard needs them
    obj = raw_event.get("object")
    metadata = obj.get("metadata") if isinstance(obj, dict) else None
    return metadata.get("namespace") if isinstance(metadata, dict) else None


def _filtered(original: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
    @functools.wraps(original)
    async def infinite_watch(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        shard, resource = _current.get(), kwargs.get("resource")
        key = (getattr(resource, "group", None), getattr(resource, "plural", None))
        async with contextlib.aclosing(original(*args, **kwargs)) as stream:
            if shard is None or key not in SHARDED_RESOURCES:
                async for raw_event in stream:
                    yield raw_event
                return
            async for raw_event in stream:
                if shard.owns(_namespace(raw_event)):
                    yield raw_event

    infinite_watch.fluxrate_sharded = True  # type: ignore[attr-defined]
    return infinite_watch
