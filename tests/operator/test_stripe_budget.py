"""The per-integration Stripe budget with priorities (``stripe_budget.PriorityGate``), as data: who reaches the
limiter in which order, at which rate, and what a cancelled waiter leaves behind."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiolimiter import AsyncLimiter

from fluxrate.operator.stripe_budget import Priority, PriorityGate
from fluxrate.operator.stripe_clients import IntegrationClient

LINKS, BACKGROUND = Priority.LINKS, Priority.BACKGROUND


class Tokens:
    """A limiter whose capacity the test hands out one token at a time; ``granted``: who got each."""

    def __init__(self) -> None:
        self.available = asyncio.Semaphore(0)
        self.granted = 0

    async def acquire(self, amount: float = 1) -> None:
        await self.available.acquire()
        self.granted += 1

    async def give(self, n: int) -> None:
        for _ in range(n):
            self.available.release()
            for _ in range(5):
                await asyncio.sleep(0)


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def start(gate: PriorityGate, order: list[str], name: str, priority: Priority) -> asyncio.Task[None]:
    async def request() -> None:
        await gate.acquire(priority)
        order.append(name)

    task = asyncio.create_task(request())
    await settle()
    return task


async def test_a_burst_of_links_overtakes_queued_background_requests() -> None:
    tokens, order = Tokens(), []
    gate = PriorityGate(tokens)
    tasks = [await start(gate, order, f"b{i}", BACKGROUND) for i in range(5)]  # b0 waits at the limiter
    tasks += [await start(gate, order, f"l{i}", LINKS) for i in range(4)]
    tasks.append(await start(gate, order, "b5", BACKGROUND))
    assert gate.waiting() == 9
    await tokens.give(10)
    await asyncio.gather(*tasks)
    # only the request already at the limiter goes before the links; first come, first served within a priority
    assert order == ["b0", "l0", "l1", "l2", "l3", "b1", "b2", "b3", "b4", "b5"]
    assert tokens.granted == 10 and gate.waiting() == 0


async def test_background_uses_what_links_leave() -> None:
    tokens, order = Tokens(), []
    gate = PriorityGate(tokens)
    first = [await start(gate, order, "l0", LINKS), await start(gate, order, "b0", BACKGROUND)]
    await tokens.give(1)  # l0 done: nothing else of priority waits, the background one is next
    later = await start(gate, order, "l1", LINKS)  # arrives while b0 is at the limiter: after it
    await tokens.give(2)
    await asyncio.gather(*first, later)
    assert order == ["l0", "b0", "l1"]


async def test_cancelled_waiters_take_no_token_and_hand_the_gate_on() -> None:
    tokens, order = Tokens(), []
    gate = PriorityGate(tokens)
    at_limiter = await start(gate, order, "b0", BACKGROUND)
    queued = await start(gate, order, "l0", LINKS)
    behind = await start(gate, order, "b1", BACKGROUND)
    queued.cancel()  # cancelled in the queue
    at_limiter.cancel()  # cancelled while waiting for capacity at the limiter
    await settle()
    assert gate.waiting() == 0  # b1 was handed the gate: it is the one at the limiter now
    await tokens.give(1)
    await behind
    assert order == ["b1"] and tokens.granted == 1  # the one token went to the only request still waiting
    for task in (queued, at_limiter):
        with pytest.raises(asyncio.CancelledError):
            await task
    assert gate.waiting() == 0
    late = await start(gate, order, "l1", LINKS)  # the gate is free again: straight to the limiter
    await tokens.give(1)
    await late
    assert order == ["b1", "l1"]


async def test_cancelled_just_after_being_handed_the_gate() -> None:
    tokens, order = Tokens(), []
    gate = PriorityGate(tokens)
    first = await start(gate, order, "l0", LINKS)
    handed = await start(gate, order, "l1", LINKS)
    last = await start(gate, order, "b0", BACKGROUND)
    tokens.available.release()  # l0 gets its token and hands the gate to l1 ...
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    handed.cancel()  # ... which is cancelled before it runs again
    await tokens.give(2)
    await asyncio.gather(first, last)
    assert order == ["l0", "b0"] and tokens.granted == 2
    with pytest.raises(asyncio.CancelledError):
        await handed


async def test_the_rate_is_the_limiters_whatever_the_priorities() -> None:
    """60 requests, mixed priorities, through the operator's own limiter shape (a fifth of the rate per 0.2 s
    window) at 200/s: the same time as through the bare limiter, and every request answered."""
    async def run(through_gate: bool) -> float:
        limiter = AsyncLimiter(40, 0.2)
        gate = PriorityGate(limiter)
        started = time.perf_counter()
        if through_gate:
            await asyncio.gather(*(gate.acquire(LINKS if i % 3 else BACKGROUND) for i in range(60)))
        else:
            await asyncio.gather(*(limiter.acquire() for _ in range(60)))
        return time.perf_counter() - started

    bare, gated = await run(False), await run(True)
    assert 0.08 < bare < 0.3 and 0.08 < gated < 0.3  # 40 at once, then 20 at 200/s: 0.1 s
    assert abs(gated - bare) < 0.05


async def test_integration_client_calls_in_priority_order() -> None:
    tokens, order = Tokens(), []
    entry = IntegrationClient(client=object(), limiter=AsyncLimiter(1, 1), mode="test",  # type: ignore[arg-type]
                              fingerprint="f")
    entry.gate = PriorityGate(tokens)

    async def call(name: str, priority: Priority | None) -> None:
        async def request(_: object) -> str:
            order.append(name)
            return name

        if priority is None:
            assert await entry.call(request) == name  # type: ignore[arg-type]
        else:
            assert await entry.call(request, priority=priority) == name  # type: ignore[arg-type]

    tasks = []
    for name, priority in (("first", None), ("default", None), ("link", LINKS)):
        tasks.append(asyncio.create_task(call(name, priority)))
        await settle()
    await tokens.give(3)
    await asyncio.gather(*tasks)
    assert order == ["first", "link", "default"]  # the default is background work
