"""``status.eventsRecovery`` of a StripeIntegration: where recovery through Stripe's Events API stands
(``fluxrate.operator.recovery``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from fluxrate.model_base import Model, Timestamp


class EventsRecovery(Model):
    cursor: Annotated[int, Field(ge=0)]
    covered_since: Annotated[int, Field(ge=0)] | None = None
    last_event_id: str | None = None
    last_pass_at: Timestamp | None = None
    recovered: Annotated[int, Field(ge=0)] = 0
