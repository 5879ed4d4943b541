"""Telling a diffctl config from a study spec by its top-level keys, so that a file given to the wrong command is
named for what it is instead of failing on its first unknown key.

Every study spec has ``arms`` (a config never does); a config's top-level keys are sections of :class:`Config`.
"""

from __future__ import annotations

from typing import Any

from .config import Config, read_yaml_file
from .errors import InputError

SPEC_KEY = "arms"


def is_study_spec(data: Any) -> bool:
    return isinstance(data, dict) and SPEC_KEY in data


def is_config(data: Any) -> bool:
    return isinstance(data, dict) and bool(data) and SPEC_KEY not in data and set(data) <= set(Config.model_fields)


def refuse_study_spec(path: str, flag: str = "") -> None:
    """Raise a one-line :class:`InputError` when the YAML file at ``path`` is a study spec."""
    if is_study_spec(read_yaml_file(path)):
        where = f"{flag} {path}" if flag else path
        raise InputError(f"{where}: is a study spec, not a diffctl config; run it with diffctl study run {path}")


def refuse_config(path: str) -> None:
    """Raise a one-line :class:`InputError` when the YAML file at ``path`` is a diffctl config, not a study spec."""
    if is_config(read_yaml_file(path)):
        raise InputError(
            f"{path}: is a diffctl config, not a study spec; train it with diffctl train --config {path} --out DIR"
        )
