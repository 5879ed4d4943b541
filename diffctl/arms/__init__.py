"""The arms of the study: one file per way of setting the loss weights and rho, all behind :class:`Arm`.

To add an arm: write a module with an ``Arm`` subclass (``kind``, ``Options``) and list it in ``ARM_CLASSES``.
"""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import Field

from .base import WEIGHT_NAMES, Arm, Control, LossTerms, StepInputs
from .controller import ControllerArm
from .dwa import DWAArm
from .fixed import FixedArm
from .piecewise import PiecewiseArm
from .rlw import RLWArm
from .scheduled import ScheduledArm
from .statenet import StateNetArm
from .uncertainty import UncertaintyArm

ARM_CLASSES: dict[str, type[Arm]] = {
    cls.kind: cls
    for cls in (FixedArm, ScheduledArm, ControllerArm, UncertaintyArm, DWAArm, RLWArm, StateNetArm, PiecewiseArm)
}

ArmOptions = Annotated[Union[tuple(cls.Options for cls in ARM_CLASSES.values())], Field(discriminator="kind")]


def build_arm(options, latent_dim: int) -> Arm:
    return ARM_CLASSES[options.kind](options, latent_dim)


__all__ = ["ARM_CLASSES", "ArmOptions", "Arm", "Control", "LossTerms", "StepInputs", "WEIGHT_NAMES", "build_arm"]
