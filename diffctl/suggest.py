"""The hint after an unknown key: the known key it most likely meant, or the keys known at its level.

Walks a pydantic model along an error's location to the mapping that holds the unknown key, through nested
models, ``Optional``/``Union``/``Annotated`` types, tagged unions (pydantic puts the tag, e.g. the arm kind, into
the location), ``dict[str, Model]`` values and list items.

Example::

    unknown_key_hint(Config, ("optim", "epoch"), "optim")  # " (did you mean optim.epochs?)"
"""

from __future__ import annotations

import difflib
import types
from typing import Annotated, Any, Literal, Sequence, Union, get_args, get_origin

from pydantic import BaseModel

CUTOFF = 0.6  # difflib's similarity ratio a near key needs: "epoch"/"epochs" 0.91, "lr"/"clip" 0.33
MAX_LISTED = 12  # more known keys than this are too many to list in a one-line message


def _expand(tp: Any) -> list[Any]:
    """The concrete types behind ``Annotated``, ``Union`` and ``X | Y``."""
    origin = get_origin(tp)
    if origin is Annotated:
        return _expand(get_args(tp)[0])
    if origin is Union or origin is types.UnionType:
        return [t for arg in get_args(tp) for t in _expand(arg)]
    return [tp]


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _fields(model: type[BaseModel]) -> dict[str, Any]:
    """The keys a model accepts (a field's alias where it has one), each with its type."""
    return {field.alias or name: field.annotation for name, field in model.model_fields.items()}


def _tags(model: type[BaseModel]) -> set[str]:
    """What pydantic may put into a location to name a union's member: its class name, or the value of a
    one-value ``Literal`` field (a discriminator such as ``kind: Literal["controller"]``)."""
    tags = {model.__name__}
    for annotation in _fields(model).values():
        values = get_args(annotation) if get_origin(annotation) is Literal else ()
        if len(values) == 1:
            tags.add(str(values[0]))
    return tags


def _index(part: Any) -> int | None:
    """A list position in a location (an int, or its text where a caller turned the location into strings)."""
    if isinstance(part, int):
        return part
    return int(part) if isinstance(part, str) and part.isdigit() else None


def _step(frontier: list[Any], part: Any) -> list[Any]:
    """The types one location part below ``frontier`` leads to (empty where the part leads nowhere known)."""
    concrete = [t for tp in frontier for t in _expand(tp)]
    models = [t for t in concrete if _is_model(t)]
    if isinstance(part, str) and not any(part in _fields(m) for m in models):
        tagged = [m for m in models if part in _tags(m)]
        if tagged:  # a union's tag: it selects members and names no key
            return tagged
    found = []
    for tp in concrete:
        origin, args = get_origin(tp), get_args(tp)
        if _is_model(tp):
            if part in _fields(tp):
                found.append(_fields(tp)[part])
        elif origin is dict and len(args) == 2 and isinstance(part, str):
            found.append(args[1])
        elif origin in (list, set, frozenset) and args and _index(part) is not None:
            found.append(args[0])
        elif origin is tuple and args and _index(part) is not None:
            i = _index(part)
            if len(args) == 2 and args[1] is Ellipsis:
                found.append(args[0])
            elif i < len(args):
                found.append(args[i])
    return found


def known_keys(model: type[BaseModel], loc: Sequence[Any]) -> list[str] | None:
    """The keys known where ``loc``'s last part is (its parent's keys), in declaration order; None where the
    location does not lead to a model (a free-form mapping, or a location of another model)."""
    frontier: list[Any] = [model]
    for part in loc[:-1]:
        frontier = _step(frontier, part)
    models = [t for tp in frontier for t in _expand(tp) if _is_model(t)]
    if not models:
        return None
    # Several models where the location names no tag (a union's members): any of their keys is known.
    return list(dict.fromkeys(key for m in models for key in _fields(m)))


def closest_key(name: Any, known: Sequence[str]) -> str | None:
    """The known key ``name`` most likely meant: one that differs only in case, else the closest by difflib."""
    if not isinstance(name, str) or name in known:
        return None
    lowered = {key.lower(): key for key in known}
    if name.lower() in lowered:
        return lowered[name.lower()]
    match = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=CUTOFF)
    return lowered[match[0]] if match else None


def unknown_key_hint(model: type[BaseModel], loc: Sequence[Any], parent: str) -> str:
    """The text after "<key>: unknown key": `` (did you mean <parent>.<key>?)``, or `` (known: a, b, ...)``
    where no key is close and at most ``MAX_LISTED`` are known, else empty. ``parent`` is the displayed key of
    ``loc[:-1]`` ("" at the top level)."""
    known = known_keys(model, loc)
    if not known or not loc or loc[-1] in known:  # a known name here: the location is another model's
        return ""
    match = closest_key(loc[-1], known)
    if match is not None:
        return f" (did you mean {parent + '.' if parent else ''}{match}?)"
    if len(known) <= MAX_LISTED:
        return f" (known: {', '.join(known)})"
    return ""
