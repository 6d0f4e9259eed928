"""A wall clock tests move forward (installed into the operator with ``fluxrate.operator.clock.install``)."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable

from fluxrate.operator.clock import system_clock


class ManualClock:
    """Real time plus an offset that only moves forward; each move is told to the listeners (``on_change``), from
    whichever thread moved it: the operator's schedule wakes its daemons then."""

    def __init__(self) -> None:
        self._offset = dt.timedelta(0)
        self._listeners: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def __call__(self) -> dt.datetime:
        return system_clock() + self._offset

    def advance(self, delta: dt.timedelta) -> dt.datetime:
        if delta < dt.timedelta(0):
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._offset += delta
            listeners = list(self._listeners)
        for listener in listeners:
            listener()
        return self()

    def move_to(self, moment: dt.datetime) -> dt.datetime:
        """Move forward to ``moment`` (nothing when it has passed)."""
        return self.advance(max(moment - self(), dt.timedelta(0)))

    def on_change(self, listener: Callable[[], None]) -> None:
        with self._lock:
            self._listeners.append(listener)
