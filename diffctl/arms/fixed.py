"""Fixed lambda: constant loss weights and rho from the config (the baseline every controller must beat
once its constants are tuned with the same search budget)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..schema import Section
from .base import Arm, Control, StepInputs, const


class FixedOptions(Section):
    kind: Literal["fixed"] = "fixed"
    rho: float = Field(0.1, ge=0.0, le=1.0)
    w_recon: float = Field(1.0, ge=0.0, le=1e3)
    w_kl: float = Field(0.1, ge=0.0, le=1e3)
    w_rank: float = Field(0.5, ge=0.0, le=1e3)
    w_ent: float = Field(0.1, ge=0.0, le=1e3)


class FixedArm(Arm):
    kind = "fixed"
    Options = FixedOptions

    def __init__(self, options: FixedOptions, latent_dim: int) -> None:
        super().__init__(options, latent_dim)
        self._control = Control(
            rho=const(options.rho),
            w_recon=const(options.w_recon),
            w_kl=const(options.w_kl),
            w_rank=const(options.w_rank),
            w_ent=const(options.w_ent),
        )

    def control(self, inputs: StepInputs) -> Control:
        return self._control
