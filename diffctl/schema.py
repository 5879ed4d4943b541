"""The base of every configuration model: strict types, unknown keys rejected, errors that name the key."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A configuration section: unknown keys and wrong types fail validation (no silent coercion)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, validate_default=True)
