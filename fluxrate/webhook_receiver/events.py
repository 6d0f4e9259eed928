"""Kubernetes Events posted by the receiver: in the background (an Event never delays or fails an answer),
tracked so shutdown waits for them, and rate-limited where the traffic may be hostile."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from fluxrate.kube import Kube, ObjectRef
from fluxrate.redact import redact

log = logging.getLogger(__name__)
COMPONENT = "fluxrate-webhook-receiver"


class EventPoster:
    def __init__(self, kube: Kube, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.kube = kube
        self.clock = clock
        self._tasks: set[asyncio.Task[None]] = set()
        self._last: dict[tuple[str, str, str, str], float] = {}

    def post(self, ref: ObjectRef, reason: str, message: str, type_: str = "Normal",
             *, at_most_every: float | None = None) -> bool:
        """Queue an Event; with ``at_most_every`` seconds, drop it if one with this reason was posted recently."""
        if at_most_every is not None:
            key = (ref.kind, ref.namespace, ref.name, reason)
            now = self.clock()
            last = self._last.get(key)
            if last is not None and now - last < at_most_every:
                return False
            self._last[key] = now
            if len(self._last) > 10_000:
                self._last.clear()
        task = asyncio.get_running_loop().create_task(self._post(ref, reason, redact(message), type_))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _post(self, ref: ObjectRef, reason: str, message: str, type_: str) -> None:
        try:
            await self.kube.post_event(ref, reason=reason, message=message, type_=type_, component=COMPONENT)
        except Exception as exc:  # an Event is best effort
            log.warning("posting Event %s on %s %s/%s failed: %s", reason, ref.kind, ref.namespace, ref.name,
                        type(exc).__name__)

    async def drain(self, timeout: float = 10.0) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
