"""An invoice's ``dueDate``: a date (due at the end of that day, UTC) or an RFC 3339 time with an offset."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, WithJsonSchema

DUE_DATE_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}(:[0-9]{2}([.][0-9]{1,9})?)?(Z|[+-][0-9]{2}:[0-9]{2}))?$"
)


def _due_date(value: Any) -> Any:
    """``YYYY-MM-DD`` is a date; anything longer must be a time with an offset (a naive time is ambiguous)."""
    if isinstance(value, str) and not re.match(DUE_DATE_PATTERN, value):
        raise ValueError("dueDate: give a date (2026-12-31) or a time with an offset (2026-12-31T17:00:00Z)")
    if isinstance(value, str) and len(value) == 10:
        return dt.date.fromisoformat(value)
    if isinstance(value, str):
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            raise ValueError("dueDate: give a date (2026-12-31) or a time with an offset (2026-12-31T17:00:00Z)")
        return moment
    return value


DueDate = Annotated[dt.date | dt.datetime, BeforeValidator(_due_date),
                    WithJsonSchema({"type": "string", "maxLength": 35, "pattern": DUE_DATE_PATTERN})]


def due_text(due: dt.date | dt.datetime) -> str:
    """A due date as customers and users read it, the same in every email and message: the date given, or the
    moment in UTC."""
    if isinstance(due, dt.datetime):
        return due.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return due.isoformat()


def due_moment(due: dt.date | dt.datetime | None) -> dt.datetime | None:
    """When the invoice becomes overdue (UTC): the end of ``dueDate``'s day, or the time it gives."""
    if due is None:
        return None
    if isinstance(due, dt.datetime):
        return due.astimezone(dt.UTC)
    return dt.datetime.combine(due + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
