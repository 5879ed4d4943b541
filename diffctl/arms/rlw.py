"""Random Loss Weighting: fresh random weights at every step, the baseline any weighting method must beat.

Lin, Ye, Zhang, Tsang (2021), "Reasonable Effectiveness of Random Weighting: A Litmus Test for Multi-Task
Learning", arXiv:2111.10603 (first titled "A Closer Look at Loss Weighting in Multi-Task Learning").
Each step: lambda~ ~ N(0, I_K), w = K softmax(lambda~) over the K = 4 terms (reconstruction, KL, ranking,
entropy alignment), so the weights sum to K. rho stays fixed from the options.

The draws come from the arm's own generator, seeded from ``seed`` or, when that is unset, from the run's seed
(the trainer seeds torch with ``config.seed`` before it builds the arm); its state is part of the arm's
state_dict, so a resumed run draws the same weights as an uninterrupted one.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field

from ..schema import Section
from .base import WEIGHT_NAMES, Arm, Control, StepInputs, const

# Mixed into the run seed so that the weights are not the same numbers as the trainer's first noise draws
# (the trainer's generator is seeded with the run seed itself).
_STREAM_TAG = 0x524C57  # "RLW"


class RLWOptions(Section):
    kind: Literal["rlw"] = "rlw"
    rho: float = Field(0.1, ge=0.0, le=1.0, description="rho, held constant")
    # None: derive the weights' stream from the run's seed (config.seed).
    seed: int | None = Field(
        None, ge=0, le=2**31 - 1, description="seed of the weight draws (null: from the run's seed)"
    )


def stream_seed(run_seed: int) -> int:
    """A seed for the weight draws that is independent of the run's other streams seeded with ``run_seed``."""
    return int(np.random.SeedSequence([run_seed, _STREAM_TAG]).generate_state(1)[0])


class RLWArm(Arm):
    """Random Loss Weighting (Lin et al., 2021): every step w = K softmax(lambda~), lambda~ ~ N(0, I)."""

    kind = "rlw"
    Options = RLWOptions

    def __init__(self, options: RLWOptions, latent_dim: int) -> None:
        super().__init__(options, latent_dim)
        run_seed = options.seed if options.seed is not None else torch.initial_seed()
        self.generator = torch.Generator().manual_seed(stream_seed(run_seed))
        self._rho = const(options.rho)

    def draw_weights(self) -> torch.Tensor:
        """The next step's weights K softmax(lambda~), in the order of ``WEIGHT_NAMES``; they sum to K."""
        k = len(WEIGHT_NAMES)
        return k * torch.softmax(torch.randn(k, generator=self.generator), dim=0)

    def control(self, inputs: StepInputs) -> Control:
        w = self.draw_weights()
        return Control(rho=self._rho, w_recon=w[0], w_kl=w[1], w_rank=w[2], w_ent=w[3])

    def get_extra_state(self) -> dict:
        return {"generator": self.generator.get_state()}

    def set_extra_state(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
