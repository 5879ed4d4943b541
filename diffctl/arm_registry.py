"""Adding an arm kind at run time, in this process: a notebook's or a test's own arm, trained by
``diffctl.train.train`` and run through a study's trial configs in-process, without editing the package.

An arm that belongs to the project is one module in ``diffctl/arms/`` and one entry in ``ARM_CLASSES``
(``diffctl/arms/__init__.py``); every process that imports diffctl knows it, including a study's Ray workers. An
arm registered here exists only in the process that registered it: a study run on Ray trains its trials in worker
processes, which do not know it. The config's ``arm`` section is a union tagged by ``kind``, built from
``ARM_CLASSES`` when ``diffctl.config`` is imported; :func:`register_arm` adds the class and rebuilds that union, so
that ``config_from_dict({"arm": {"kind": "ramp"}})`` validates the new kind's options like any other's.

Example::

    register_arm(RampArm)            # RampArm.kind == "ramp", RampArm.Options: a Section with kind: Literal["ramp"]
    records = list(train(config_from_dict({"arm": {"kind": "ramp"}, "optim": {"epochs": 2}})))
    unregister_arm("ramp")
"""

from __future__ import annotations

import typing
from typing import Annotated, Union

from pydantic import Field
from pydantic.fields import FieldInfo

from .arms import ARM_CLASSES, Arm
from .config import Config

_REGISTERED: set[str] = set()  # the kinds added here (the package's own cannot be removed)


def _rebuild_config() -> None:
    """Config's ``arm`` field as the union of every registered kind's options, its default kept."""
    union = Annotated[Union[tuple(cls.Options for cls in ARM_CLASSES.values())], Field(discriminator="kind")]
    current = Config.model_fields["arm"]
    Config.model_fields["arm"] = FieldInfo.merge_field_infos(FieldInfo.from_annotation(union), default=current.default)
    Config.model_rebuild(force=True)


def register_arm(cls: type[Arm]) -> None:
    """Make ``cls`` an arm kind of this process: listed in ``ARM_CLASSES`` and accepted as ``arm.kind: <kind>``.
    Raises ``ValueError`` for a class that is not an :class:`Arm` with a new ``kind`` and matching ``Options``."""
    if not (isinstance(cls, type) and issubclass(cls, Arm)):
        raise ValueError(f"{cls!r}: an arm is a subclass of diffctl.arms.Arm")
    kind = getattr(cls, "kind", None)
    options = getattr(cls, "Options", None)
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"{cls.__name__}.kind: the arm's kind, a non-empty text")
    if kind in ARM_CLASSES:
        raise ValueError(f"{cls.__name__}.kind: {kind!r} is taken by {ARM_CLASSES[kind].__name__}")
    field = getattr(options, "model_fields", {}).get("kind")
    if field is None or typing.get_args(field.annotation) != (kind,) or field.default != kind:
        raise ValueError(f"{cls.__name__}.Options.kind: must be kind: Literal[{kind!r}] = {kind!r}")
    ARM_CLASSES[kind] = cls
    _REGISTERED.add(kind)
    _rebuild_config()


def unregister_arm(kind: str) -> None:
    """Remove a kind that :func:`register_arm` added (a test's cleanup)."""
    if kind not in _REGISTERED:
        raise ValueError(f"{kind!r}: not an arm registered at run time")
    _REGISTERED.discard(kind)
    ARM_CLASSES.pop(kind)
    _rebuild_config()
