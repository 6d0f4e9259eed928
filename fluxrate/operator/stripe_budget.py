"""One integration's Stripe budget shared with a priority: what a customer waits for goes first.

Stripe limits requests per account (25/s in test mode, 100/s live); the operator spends that budget through one
``aiolimiter.AsyncLimiter`` per integration. ``PriorityGate`` sits in front of it: it lets one waiter at a time
into the limiter, the highest priority first (first come, first served within one), so

- the rate is the limiter's, unchanged (the gate never grants capacity, it only orders who asks for it);
- a burst of ``LINKS`` requests overtakes every queued ``BACKGROUND`` one (at most the one already at the
  limiter goes before them);
- ``BACKGROUND`` work is never held back while no ``LINKS`` request waits: it uses what links leave;
- a waiter cancelled anywhere (in the queue, or at the limiter, whose own acquire takes capacity only when it
  returns) takes nothing and hands the gate on.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from enum import IntEnum
from typing import Protocol


class Priority(IntEnum):
    """Higher goes first."""

    BACKGROUND = 0  # reconciliation and recovery, endpoint and key checks, receipts' reads
    LINKS = 1  # link creation, renewal after a payment failure, deactivation: a customer or a payment waits


class Limiter(Protocol):
    async def acquire(self, amount: float = 1) -> None: ...


class PriorityGate:
    def __init__(self, limiter: Limiter) -> None:
        self.limiter = limiter
        self._queue: list[tuple[int, int, asyncio.Future[None]]] = []  # (-priority, arrival, waiter): a min-heap
        self._arrival = itertools.count()
        self._busy = False  # a waiter holds the gate (it is at the limiter, or was just handed the gate)

    def waiting(self) -> int:
        """Waiters queued behind the gate (cancelled ones not counted)."""
        return sum(1 for _, _, waiter in self._queue if not waiter.done())

    async def acquire(self, priority: Priority = Priority.BACKGROUND) -> None:
        """Returns when the limiter granted this request its capacity, after every higher-priority waiter."""
        if self._busy or self._queue:
            waiter = asyncio.get_running_loop().create_future()
            heapq.heappush(self._queue, (-int(priority), next(self._arrival), waiter))
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._hand_on()  # handed the gate just as it was cancelled: pass it to the next one
                raise  # else its cancelled future stays queued and is skipped by _hand_on
        else:
            self._busy = True
        try:
            await self.limiter.acquire()
        finally:
            self._hand_on()

    def _hand_on(self) -> None:
        while self._queue:
            _, _, waiter = heapq.heappop(self._queue)
            if not waiter.done():
                waiter.set_result(None)
                return  # the gate stays held: by that waiter now
        self._busy = False
