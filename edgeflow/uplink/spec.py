"""What a user writes to declare the uplink: one pydantic model per uplink ``type``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["FileUplinkSpec", "UplinkSpec"]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileUplinkSpec(_Spec):
    """Append each shipped event as one EdgeX v3 ``AddEventRequest`` JSON line to ``path``.
    The debugging sink, and what tests read."""

    type: Literal["file"]
    path: Path
    fsync: bool = False


UplinkSpec = Annotated[FileUplinkSpec, Field(discriminator="type")]
