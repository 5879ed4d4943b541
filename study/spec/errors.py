"""The error of a bad study spec: one line that names the offending key (an :class:`~diffctl.errors.InputError`,
so that the command line exits 2 with it)."""

from __future__ import annotations

from diffctl.errors import InputError


class SpecError(InputError):
    """A bad study spec; its message is one line naming the offending key."""
