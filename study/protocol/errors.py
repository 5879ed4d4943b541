"""The error of a bad study spec or study file: one line that names the offending key (an
:class:`~diffctl.errors.InputError`, so that the command line exits 2 with it), and the two helpers every such line
is made with.
"""

from __future__ import annotations

from typing import Any

import pydantic

from diffctl.config import first_error, format_validation_error
from diffctl.errors import InputError


class SpecError(InputError):
    """A bad study spec; its message is one line naming the offending key."""


def validation_line(exc: pydantic.ValidationError, where: str, model: type[pydantic.BaseModel] | None = None,
                    section: bool = False) -> str:
    """One line for a model that refused its data: ``<where>: <key>: <what is wrong>`` (``section``: the data is
    the section at the spec key ``where``, so ``<where>.<key>: ...``), the key of the error a reader fixes first
    (``diffctl.config.first_error``: an unknown key before the required key it left missing); ``model``: what was
    validated, for a did-you-mean hint on an unknown key (None: no hint)."""
    error = first_error(exc.errors())
    if error["type"] == "missing":
        text = f"{'.'.join(str(p) for p in error['loc'])}: missing"
    else:
        text = format_validation_error(error, model=model)
    return f"{where}{'.' if section else ': '}{text}"


def shown(value: Any) -> str:
    """A value as an error line shows it: its repr, cut at 40 characters."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
