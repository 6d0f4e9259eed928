"""The wall clock of due dates and reminders (``Runtime.clock``), replaceable so tests move time forward instead of
sleeping through days (the test stack's ``fluxrate_sandbox.clock.ManualClock``). A clock with an ``on_change(listener)``
method tells the operator when it jumps, and the schedule looks again at once."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

Clock = Callable[[], dt.datetime]


def system_clock() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


_installed: Clock = system_clock


def installed() -> Clock:
    """The clock a new ``Runtime`` uses."""
    return _installed


def install(clock: Clock) -> Clock:
    """Make ``clock`` the one new ``Runtime``s use; returns the previous one (to put back)."""
    global _installed
    previous, _installed = _installed, clock
    return previous
