"""Fixed lambda: constant loss weights and rho from the config (the baseline every controller must beat
once its constants are tuned with the same search budget).

Each weight is a number or a pair ``[A, B]`` (one per VAE), so that a fixed run can hold the weights of an arm
that weights the two VAEs apart (the scheduled arm's beta, the legacy StateNet's lambdas); rho is one number (an
arm's per-sample or per-latent rho is held as its mean, the records' ``rho_mean``).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from ..schema import Section
from .base import WEIGHT_NAMES, Arm, Control, StepInputs, const


def number_or_pair(value: Any, handler) -> float | list[float]:
    """Wrap validator of a weight: a number, or a pair ``[A, B]`` whose elements are each checked as the number
    would be. Any error comes out as one error at the weight's key."""
    pair = isinstance(value, list)
    if pair and (len(value) != 2 or any(isinstance(item, list) for item in value)):
        raise PydanticCustomError("per_vae_pair", "expected a number or a pair [A, B] of numbers")
    checked = []
    for vae, item in zip("AB", value) if pair else [("", value)]:
        try:
            checked.append(handler(item))
        except ValidationError as exc:
            err = exc.errors()[0]
            where = f" (VAE {vae})" if pair else ""
            raise PydanticCustomError(err["type"], "{msg}", {"msg": err["msg"] + where}) from None
    return checked if pair else checked[0]


class FixedOptions(Section):
    kind: Literal["fixed"] = "fixed"
    rho: float = Field(
        0.1, ge=0.0, le=1.0, description="cross-injection strength: decoder A reads (1 - rho) z_A + rho z_B, B likewise"
    )
    w_recon: float | list[float] = Field(1.0, ge=0.0, le=1e3, description="weight of the reconstruction cross-entropy")
    w_kl: float | list[float] = Field(0.1, ge=0.0, le=1e3, description="weight of the free-bits KL (beta)")
    w_rank: float | list[float] = Field(0.5, ge=0.0, le=1e3, description="weight of the triplet ranking loss")
    w_ent: float | list[float] = Field(
        0.1, ge=0.0, le=1e3, description="weight of the entropy-alignment term |H_A - H_B|"
    )

    _per_vae = field_validator(*WEIGHT_NAMES, mode="wrap")(number_or_pair)


def control_fields() -> dict[str, tuple]:
    """FixedOptions' rho and four weights (bounds, defaults, descriptions) as ``create_model`` field arguments;
    the weights need :func:`number_or_pair` as a wrap validator."""
    return {name: (f.annotation, f) for name, f in FixedOptions.model_fields.items() if name != "kind"}


def constant_control(values: Section) -> Control:
    """The Control of a section holding rho and the four weights (a pair [A, B] becomes a (2,) tensor)."""
    weights = {name: torch.tensor(getattr(values, name), dtype=torch.float32) for name in WEIGHT_NAMES}
    return Control(rho=const(values.rho), **weights)


class FixedArm(Arm):
    kind = "fixed"
    Options = FixedOptions

    def __init__(self, options: FixedOptions, latent_dim: int) -> None:
        super().__init__(options, latent_dim)
        self._control = constant_control(options)

    def control(self, inputs: StepInputs) -> Control:
        return self._control
