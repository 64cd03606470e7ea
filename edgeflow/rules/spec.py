"""What a user writes to declare a rule: one pydantic model per rule ``type`` (a discriminated union)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DeadbandSpec", "RuleSpec"]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeadbandSpec(_Spec):
    """Report by exception: pass a reading when it moves more than ``absolute`` from the last one sent."""

    type: Literal["deadband"]
    absolute: float = Field(ge=0)


RuleSpec = Annotated[DeadbandSpec, Field(discriminator="type")]
