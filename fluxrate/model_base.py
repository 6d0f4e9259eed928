"""The base of fluxrate's resource models, and the field types every model shares."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints
from pydantic.alias_generators import to_camel

Currency = Annotated[str, StringConstraints(min_length=3, max_length=3, pattern=r"^[A-Z]{3}$")]
Timestamp = dt.datetime


class Model(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields are an error, as the CRD prunes them."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    def to_k8s(self) -> dict:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
