"""``diffctl study spec show``: every section and key of a study spec with its type, default, range and meaning.

Read from the spec's pydantic schema (``study.protocol.schema``: each field's type, default, bounds and
``description``), as ``diffctl config show`` reads the config's (``diffctl.config_reference``), so the reference
cannot drift from what a spec load accepts. A mapping of labelled sections (``arms``) is shown as
``arms.<label>.``, a list of sections as ``objectives[].``; the distributions of a search space and the ranges of
a PBT arm's mutations, whose fields depend on their ``type``, follow in tables of their own.

Example::

    diffctl study spec show
"""

from __future__ import annotations

import types
import typing
from typing import Any, Iterator

from pydantic import BaseModel

from diffctl.config_reference import KeyInfo, _default, _range, _table

from .schema import RETUNE_KEY, Ablate, ArmSpec, Mutation, Retune, StudySpec

# A key that the schema requires but a validator fills in before (StudySpec._selection_defaults_to_the_first_objective).
FILLED = {"selection": "the first objective"}
# The placeholder of a label the spec's author picks, in a key: a mapping's key.
PLACEHOLDERS = {"arms": "<label>", "space": "<key>", "mutations": "<key>", "axes": "<axis>.<option>",
                "equivalence": "<metric>", "grid": "<key>"}


def _members(annotation: Any) -> list[Any]:
    """The types behind ``Annotated``, ``Optional`` and unions."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _members(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [t for arg in typing.get_args(annotation) for t in _members(arg)]
    return [annotation]


def _models(annotation: Any) -> list[type[BaseModel]]:
    return [t for t in _members(annotation) if isinstance(t, type) and issubclass(t, BaseModel)]


def type_name(annotation: Any) -> str:
    """A field's type in words; a union of more than three types (a categorical choice) is "any value"."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is typing.Literal:
        return "choice"
    if origin in (typing.Union, types.UnionType):
        null = type(None) in args
        rest = [a for a in args if a is not type(None)]
        if len(rest) > 3:
            return "any value"
        return " or ".join(type_name(a) for a in rest) + (" or null" if null else "")
    if origin is list:
        return f"list of {type_name(args[0])}" if args else "list"
    if origin is dict:
        return "mapping"
    return {bool: "bool", int: "int", float: "float", str: "text"}.get(annotation, "any value")


def _length(metadata: list[Any]) -> str:
    """``1..20 items`` from a field's length bounds."""
    low = next((m.min_length for m in metadata if hasattr(m, "min_length")), None)
    high = next((m.max_length for m in metadata if hasattr(m, "max_length")), None)
    if low is None and high is None:
        return ""
    return f"{low or 0}..{high} items" if high is not None else f">= {low} items"


def _default_text(field: Any, name: str = "") -> str:
    if name in FILLED:
        return FILLED[name]
    if field.is_required():
        return "required"
    if isinstance(field.default, BaseModel):
        return ""  # a section: its keys show their defaults
    return _default(field.default)


def _container(annotation: Any) -> tuple[str, Any] | None:
    """('mapping' or 'list', the value type) of a dict or list field (inside ``X | None`` too), else None."""
    for member in _members(annotation):
        origin, args = typing.get_origin(member), typing.get_args(member)
        if origin is dict and len(args) == 2:
            return "mapping", args[1]
        if origin is list and args:
            return "list", args[0]
    return None


def model_rows(model: type[BaseModel], prefix: str = "") -> Iterator[KeyInfo]:
    """The rows of one spec section and of the sections inside it, in schema order (a ``type`` first). A
    distribution or a mutation (a union of sections told apart by ``type``) is one row here;
    :func:`spec_reference_lines` details them."""
    fields = sorted(model.model_fields.items(), key=lambda item: item[0] != "type")
    for name, field in fields:
        key, meaning = f"{prefix}{name}", field.description or ""
        rng = _range(field.annotation, field.metadata) or _length(field.metadata)
        nullable = type(None) in _members(field.annotation)
        inner = _models(field.annotation)
        container = _container(field.annotation)
        if len(inner) == 1:  # a section, or a section or null
            yield KeyInfo(key, "section" + (" or null" if nullable else ""), _default_text(field, key), rng, meaning)
            yield from model_rows(inner[0], f"{key}.")
        elif container is not None and len(_models(container[1])) == 1:  # labelled sections, or a list of them
            kind, value = container
            below = f"{key}.{PLACEHOLDERS.get(name, '<name>')}." if kind == "mapping" else f"{key}[]."
            yield KeyInfo(key, f"{kind} of sections", _default_text(field), rng, meaning)
            yield from model_rows(_models(value)[0], below)
        elif container is not None and len(_models(container[1])) > 1:  # key -> a distribution or a mutation
            kinds = "/".join(_tag(m) for m in _models(container[1]))
            yield KeyInfo(key, f"mapping of {PLACEHOLDERS.get(name, '<key>')} -> {kinds}", _default_text(field), rng,
                          meaning)
        else:
            yield KeyInfo(key, type_name(field.annotation), _default_text(field), rng, meaning)
        if model is Ablate and name == "axes":  # an option's own small search, under the key ``retune``
            where = f"{key}.{PLACEHOLDERS['axes']}.{RETUNE_KEY}"
            yield KeyInfo(where, "section or absent", "", "", (Retune.__doc__ or "").split("(")[0].strip())
            yield from model_rows(Retune, f"{where}.")


def _tag(model: type[BaseModel]) -> str:
    """The value of a union member's ``type`` field (``float``)."""
    return typing.get_args(model.model_fields["type"].annotation)[0]


def _variant_lines(title: str, union: Any) -> list[str]:
    lines = []
    for model in _models(union):
        lines += ["", f"{title} (type: {_tag(model)})"]
        lines += _table(list(model_rows(model)))
    return lines


def spec_reference_lines() -> list[str]:
    """The whole reference: the spec's keys, then each distribution and mutation type."""
    distribution = _container(ArmSpec.model_fields["space"].annotation)[1]
    lines = ["A study spec is one YAML mapping (study/LAYOUT.md describes it). Keys marked required must be given; "
             "every other key takes its default.",
             "Ranges: [ ] include the bound, ( ) do not. <label>, <key>, <metric>, <axis>, <option>: names you "
             "choose (flat config keys such as arm.w_kl for <key>).", ""]
    lines += _table(list(model_rows(StudySpec)))
    lines += _variant_lines("a search distribution: arms.<label>.space.<key>, "
                            f"ablate.axes.<axis>.<option>.{RETUNE_KEY}.space.<key>", distribution)
    lines += _variant_lines("a PBT mutation range: arms.<label>.pbt.mutations.<key>", Mutation)
    lines += ["", "An arm's config, base and an ablation option's keys are diffctl config keys: diffctl config show "
              "lists them. An arm's pbt section applies with search: pbt only, its space with search: optuna only."]
    return lines
