"""When a watch on the sandbox API (or the real kube-apiserver) first saw each invoice in a given state (the
user-visible moment)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fluxrate import API_GROUP, API_VERSION
from fluxrate_sandbox.real_kube import RealKube
from fluxrate_sandbox.stack import Sandbox

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
async def first_seen(server: Sandbox | RealKube, namespace: str,
                     check: Callable[[Obj], bool]) -> AsyncIterator[FirstSeen]:
    """Watch the namespace's invoices from now on; record each one the first time ``check`` holds for it."""
    seen = FirstSeen()
    path = f"/apis/{API_GROUP}/{API_VERSION}/namespaces/{namespace}/invoices"
    if isinstance(server, RealKube):
        client = server.client
        listed = await server.request("GET", f"{path}?limit=1")
        since = listed["metadata"]["resourceVersion"]
    else:
        client = server.kube.client
        since = server.kube.emulator.resource_version

    async def watch() -> None:
        params = {"watch": "true", "resourceVersion": str(since), "timeoutSeconds": "900"}
        async with client() as http, http.get(path, params=params) as answer:
            if answer.status != 200:
                raise RuntimeError(f"watch on {path}: {answer.status} {await answer.text()}")
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
