"""Nested mappings and their dotted keys: how a spec's ``base``, an arm's ``config``, sampled ``params`` and an
ablation option's overrides combine into one diffctl config (as a dict).

Example::

    data = {"arm": {"kind": "fixed", "rho": 0.1}}
    merge(data, {"arm": {"rho": 0.3}})          # {"arm": {"kind": "fixed", "rho": 0.3}}
    set_flat(data, "optim.lr", 1e-3)            # {"arm": {...}, "optim": {"lr": 0.001}}
    list(flat_keys(data))                       # ["arm.kind", "arm.rho", "optim.lr"]
"""

from __future__ import annotations

from typing import Any, Iterator

from .errors import SpecError


def merge(into: dict, extra: dict) -> None:
    """Deep-merge ``extra`` into ``into``; a section with a different ``kind`` (an arm) replaces the old one."""
    for key, value in extra.items():
        old = into.get(key)
        if isinstance(old, dict) and isinstance(value, dict) and old.get("kind", value.get("kind")) == value.get(
            "kind", old.get("kind")
        ):
            merge(old, value)
        else:
            into[key] = value


def set_flat(data: dict, key: str, value: Any) -> None:
    """Set the dotted ``key`` (``arm.outer_weights.w_rank``) in the nested mapping ``data``."""
    *parents, leaf = key.split(".")
    node = data
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise SpecError(f"{key}: {part} is not a section")
        node = child
    node[leaf] = value


def flat_keys(data: dict, prefix: str = "") -> Iterator[str]:
    """The dotted leaf keys of a nested mapping."""
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            yield from flat_keys(value, path + ".")
        else:
            yield path
