"""Uncertainty weighting: one learned log-variance per loss term, trained by the same loss it weights.

Kendall, Gal, Cipolla (2018), "Multi-Task Learning Using Uncertainty to Weigh Losses for Scene Geometry and
Semantics", CVPR. Loss: sum_k 1/2 e^(-s_k) L_k + 1/2 s_k over the four terms (reconstruction, KL, ranking,
entropy alignment; each VAE's pair shares one s_k). The +1/2 s_k term is a log barrier: without it every weight
would slide to 0. Setting d/ds_k = 0 gives e^(-s_k) = 1/L_k, so the stationary weight is w_k = 1/(2 L_k) — a
controller with no input statistics (bias only). rho stays fixed from the options.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from ..schema import Section
from .base import WEIGHT_NAMES, Arm, Control, EpochMeans, LossTerms, StepInputs, const, floor_threshold

# w_k = SCALE * exp(-s_k): the factor in front of the squashing map, which sets the at-floor threshold.
SCALE = 0.5


class UncertaintyOptions(Section):
    kind: Literal["uncertainty"] = "uncertainty"
    rho: float = Field(0.1, ge=0.0, le=1.0, description="rho, held constant")
    # s_k at step 0 for every term: w_k = 1/2 e^(-s_k), so 0 starts every weight at 1/2.
    init_log_variance: float = Field(0.0, ge=-10.0, le=10.0, description="every s_k at step 0 (w_k = 1/2 e^(-s_k))")


class UncertaintyArm(Arm):
    """Uncertainty weighting (Kendall, Gal, Cipolla, CVPR 2018): learned s_k, loss sum 1/2 e^(-s_k) L_k + 1/2 s_k."""

    kind = "uncertainty"
    Options = UncertaintyOptions

    def __init__(self, options: UncertaintyOptions, latent_dim: int) -> None:
        super().__init__(options, latent_dim)
        self.log_variance = nn.Parameter(torch.full((len(WEIGHT_NAMES),), float(options.init_log_variance)))
        self._rho = const(options.rho)
        self._floor = floor_threshold(0.0, SCALE)
        self._means = EpochMeans()

    def weights(self) -> torch.Tensor:
        """The four weights 1/2 e^(-s_k), in the order of ``WEIGHT_NAMES``; tensors in the graph of s."""
        return SCALE * torch.exp(-self.log_variance)

    def start_epoch(self, epoch, history, optimizer) -> None:
        self._means.reset()

    def control(self, inputs: StepInputs) -> Control:
        w = self.weights()
        return Control(
            rho=self._rho, w_recon=w[0], w_kl=w[1], w_rank=w[2], w_ent=w[3], penalty=SCALE * self.log_variance.sum()
        )

    def after_step(self, terms: LossTerms, control: Control, optimizer) -> None:
        # The gradient is read after the trainer's global clip: it is what the optimiser step used.
        grad = self.log_variance.grad
        step = {"controller_grad_norm": grad.norm() if grad is not None else torch.zeros(())}
        for name, w in control.weights().items():
            step[f"{name}_at_floor"] = (w.detach() <= self._floor).double()
        self._means.add(step)

    def epoch_record(self) -> dict[str, float]:
        record = self._means.result()
        s = self.log_variance.detach()
        record["controller_param_drift"] = float((s - self.options.init_log_variance).norm())
        record.update({f"s_{name[2:]}": float(value) for name, value in zip(WEIGHT_NAMES, s)})
        return record
