"""When a watch on the sandbox API first saw each invoice in a given state (the user-visible moment)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fluxrate import API_GROUP, API_VERSION
from fluxrate.sandbox.stack import Sandbox

Obj = dict[str, Any]


def is_open(obj: Obj) -> bool:
    status = obj.get("status") or {}
    return status.get("phase") == "Open" and bool((status.get("paymentLink") or {}).get("url"))


def is_paid(obj: Obj) -> bool:
    return (obj.get("status") or {}).get("phase") == "Paid"


class FirstSeen:
    def __init__(self) -> None:
        self.at: dict[str, float] = {}  # invoice name -> wall-clock time
        self._changed = asyncio.Condition()

    async def add(self, name: str) -> None:
        if name not in self.at:
            self.at[name] = time.time()
            async with self._changed:
                self._changed.notify_all()

    async def wait(self, count: int, timeout: float) -> bool:
        """Until ``count`` invoices were seen; False after ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(lambda: len(self.at) >= count)
            return True
        except TimeoutError:
            return False


@contextlib.asynccontextmanager
async def first_seen(sandbox: Sandbox, namespace: str, check: Callable[[Obj], bool]) -> AsyncIterator[FirstSeen]:
    """Watch the namespace's invoices from now on; record each one the first time ``check`` holds for it."""
    seen = FirstSeen()
    since = sandbox.kube.emulator.resource_version
    path = f"/apis/{API_GROUP}/{API_VERSION}/namespaces/{namespace}/invoices"

    async def watch() -> None:
        params = {"watch": "true", "resourceVersion": str(since), "timeoutSeconds": "900"}
        async with sandbox.kube.client() as http, http.get(path, params=params) as answer:
            async for line in answer.content:
                obj = json.loads(line).get("object") or {}
                if obj.get("kind") == "Invoice" and check(obj):
                    await seen.add(obj["metadata"]["name"])

    task = asyncio.create_task(watch())
    try:
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
