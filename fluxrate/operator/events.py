"""Posting a ``Decision``'s Events on the object it was about."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import kopf


def post_events(body: Any, events: Iterable[tuple[str, str, str]]) -> None:
    """Post (type, reason, message) Events on the object."""
    for type_, reason, message in events:
        kopf.event(body, type=type_, reason=reason, message=message)
