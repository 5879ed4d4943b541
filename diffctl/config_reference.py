"""``diffctl config show [--arm KIND]``: every config key with its type, default, range and meaning.

Read from the pydantic schema itself (types, defaults, ``ge``/``gt``/``le``/``lt`` bounds and each field's
``description``), so the reference cannot drift from what validation accepts. The statistics a controller may
read (``arm.stats``) are listed from their registry.

Example::

    diffctl config show --arm controller
"""

from __future__ import annotations

import json
import sys
import types
import typing
from dataclasses import dataclass
from typing import Any, Iterator, Literal

import annotated_types
from pydantic import BaseModel

from .arms import ARM_CLASSES
from .arms.statistics import REGISTRY, StatsSource, default_stats
from .config import Config
from .errors import InputError

ARM_KEY = "arm"
STATISTICS_KEY = "arm.stats"


@dataclass(frozen=True)
class KeyInfo:
    """One row of the reference: a dotted key, its type, default, allowed range and meaning."""

    key: str
    type: str
    default: str
    range: str
    meaning: str


def _is_section(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _type_name(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is Literal:
        return "choice"
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in args)
    if origin is list:
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        return "mapping"
    return {bool: "bool", int: "int", float: "float", str: "text"}.get(annotation, getattr(annotation, "__name__", "?"))


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


# annotated_types bound -> (bracket, operator, the attribute holding its value)
_LOWER = {annotated_types.Ge: ("[", ">=", "ge"), annotated_types.Gt: ("(", ">", "gt")}
_UPPER = {annotated_types.Le: ("]", "<=", "le"), annotated_types.Lt: (")", "<", "lt")}


def _bound(metadata: list[Any], kinds: dict) -> tuple[str, str, float] | None:
    """(bracket, operator, value) of the first bound of ``kinds`` among a field's metadata, or None."""
    for bound in metadata:
        if type(bound) in kinds:
            bracket, operator, attribute = kinds[type(bound)]
            return bracket, operator, getattr(bound, attribute)
    return None


def _range(annotation: Any, metadata: list[Any]) -> str:
    """``[0, 1]``, ``(0, 10]``, ``>= 1`` from the bounds; the choices of a Literal, also inside ``X | None``."""
    literals = [a for a in (annotation, *typing.get_args(annotation)) if typing.get_origin(a) is Literal]
    if literals:
        return " | ".join(str(choice) for choice in typing.get_args(literals[0]))
    low, high = _bound(metadata, _LOWER), _bound(metadata, _UPPER)
    if low and high:
        return f"{low[0]}{_number(low[2])}, {_number(high[2])}{high[0]}"
    bound = low or high
    return f"{bound[1]} {_number(bound[2])}" if bound else ""


def _default(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return _number(value)
    return json.dumps(value)


def section_keys(model: type[BaseModel], prefix: str = "", skip: tuple[str, ...] = ()) -> Iterator[KeyInfo]:
    """The rows of one configuration section and of the sections inside it, in schema order."""
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        if name in skip:
            continue
        if _is_section(field.annotation):
            yield KeyInfo(key, "section", "", "", field.description or "")
            yield from section_keys(field.annotation, f"{key}.")
        elif key == f"{ARM_KEY}.kind":
            meaning = f"which arm sets the weights and rho: {', '.join(ARM_CLASSES)}"
            yield KeyInfo(key, "choice", _default(field.default), _default(field.default), meaning)
        else:
            rng = _range(field.annotation, field.metadata)
            yield KeyInfo(key, _type_name(field.annotation), _default(field.default), rng, field.description or "")


def arm_kind(kind: str | None) -> list[str]:
    """The arm kinds to show: ``kind`` alone, or every kind; an unknown kind raises :class:`InputError`."""
    if kind is None:
        return list(ARM_CLASSES)
    if kind not in ARM_CLASSES:
        raise InputError(f"--arm {kind!r}: unknown arm kind (known: {', '.join(ARM_CLASSES)})")
    return [kind]


def _statistics_lines() -> list[str]:
    lines = [f"statistics for {STATISTICS_KEY} ({len(REGISTRY)}), with the default set of each arm.stats_source:"]
    lines += [f"  {source}: {', '.join(default_stats(source))}" for source in typing.get_args(StatsSource)]
    width = max(map(len, REGISTRY))
    return lines + [f"  {name:{width}}  {stat.meaning}" for name, stat in REGISTRY.items()]


def _table(rows: list[KeyInfo]) -> list[str]:
    rows = [KeyInfo("key", "type", "default", "range", "meaning"), *rows]
    columns = [(r.key, r.type, r.default, r.range) for r in rows]
    widths = [max(len(c[i]) for c in columns) for i in range(4)]
    return [
        "  ".join(text.ljust(width) for text, width in zip(cells, widths)) + "  " + row.meaning
        for cells, row in zip(columns, rows)
    ]


def reference_lines(kind: str | None = None) -> list[str]:
    """The whole reference: the common sections, then the ``arm`` section of each kind shown."""
    common = list(section_keys(Config, skip=(ARM_KEY,)))
    lines = ["Every key is optional (an absent key takes its default). Ranges: [ ] include the bound, ( ) do not.", ""]
    lines += _table(common)
    for shown in arm_kind(kind):
        arm = ARM_CLASSES[shown]
        doc = " ".join((arm.__doc__ or sys.modules[arm.__module__].__doc__ or "").strip().split("\n\n")[0].split())
        lines += ["", f"arm (kind: {shown})" + (f": {doc}" if doc else "")]
        lines += _table(list(section_keys(arm.Options, f"{ARM_KEY}.")))
    if "controller" in arm_kind(kind):
        lines += [""] + _statistics_lines()
    return lines
