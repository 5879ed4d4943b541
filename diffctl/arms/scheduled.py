"""The upstream schedule: rho in phases, a cyclic entropy-alignment weight and a beta (KL weight) warm-up.

rho: ``rho_start`` until ``rho_hold_until``, linear to ``rho_mid`` by ``rho_mid_epoch``, then linear to
``rho_end`` by ``rho_end_epoch`` (upstream: 0.1 until 40, 0.3 by 120, then 0.7). Entropy weight:
``w_ent + w_ent_amplitude * sin(2 pi epoch / w_ent_period)``. beta_A: linear 0 -> ``beta_mid`` over
``beta_warmup_epochs``, then linear to ``beta_end`` over as many epochs again; beta_B: 0 for
``beta_b_delay`` epochs, then beta_A's value (upstream's jump, which caused a loss spike at that epoch).
Values change once per epoch, as upstream.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field

from ..schema import Section
from .base import Arm, Control, StepInputs, const


class ScheduledOptions(Section):
    kind: Literal["scheduled"] = "scheduled"
    rho_start: float = Field(0.1, ge=0.0, le=1.0, description="rho until rho_hold_until")
    rho_hold_until: int = Field(40, ge=0, description="last epoch at rho_start")
    rho_mid: float = Field(0.3, ge=0.0, le=1.0, description="rho reached linearly by rho_mid_epoch")
    rho_mid_epoch: int = Field(120, ge=1, description="epoch at which rho reaches rho_mid")
    rho_end: float = Field(0.7, ge=0.0, le=1.0, description="rho reached linearly by rho_end_epoch")
    rho_end_epoch: int = Field(200, ge=1, description="epoch at which rho reaches rho_end")
    w_recon: float = Field(0.7, ge=0.0, le=1e3, description="reconstruction weight (constant)")
    w_rank: float = Field(0.5, ge=0.0, le=1e3, description="ranking weight (constant)")
    w_ent: float = Field(0.3, ge=0.0, le=1e3, description="mean of the cyclic entropy-alignment weight")
    w_ent_amplitude: float = Field(
        0.15, ge=0.0, le=1e3, description="amplitude of its sine: w_ent + amplitude sin(2 pi epoch / w_ent_period)"
    )
    w_ent_period: int = Field(30, ge=1, description="period of that sine, in epochs")
    beta_mid: float = Field(
        0.3, ge=0.0, le=1e3, description="KL weight reached linearly from 0 over beta_warmup_epochs"
    )
    beta_end: float = Field(0.8, ge=0.0, le=1e3, description="KL weight reached over as many epochs again")
    beta_warmup_epochs: int = Field(50, ge=1, description="length of each of the two KL-weight ramps, in epochs")
    beta_b_delay: int = Field(50, ge=0, description="epochs VAE-B's KL weight stays 0 before it jumps to VAE-A's")


def _ramp(epoch: float, start: float, end: float, v0: float, v1: float) -> float:
    if epoch <= start:
        return v0
    if epoch >= end:
        return v1
    return v0 + (v1 - v0) * (epoch - start) / (end - start)


class ScheduledArm(Arm):
    kind = "scheduled"
    Options = ScheduledOptions

    def __init__(self, options: ScheduledOptions, latent_dim: int) -> None:
        super().__init__(options, latent_dim)
        self._control = self.schedule(0)

    def schedule(self, epoch: int) -> Control:
        o = self.options
        if epoch <= o.rho_hold_until:
            rho = o.rho_start
        elif epoch <= o.rho_mid_epoch:
            rho = _ramp(epoch, o.rho_hold_until, o.rho_mid_epoch, o.rho_start, o.rho_mid)
        else:
            rho = _ramp(epoch, o.rho_mid_epoch, max(o.rho_end_epoch, o.rho_mid_epoch), o.rho_mid, o.rho_end)
        w_ent = o.w_ent + o.w_ent_amplitude * math.sin(2 * math.pi * epoch / o.w_ent_period)
        w = o.beta_warmup_epochs
        beta_a = _ramp(epoch, 0, w, 0.0, o.beta_mid) if epoch <= w else _ramp(epoch, w, 2 * w, o.beta_mid, o.beta_end)
        beta_b = 0.0 if epoch < o.beta_b_delay else beta_a
        return Control(
            rho=const(rho),
            w_recon=const(o.w_recon),
            w_kl=torch.tensor([beta_a, beta_b]),
            w_rank=const(o.w_rank),
            w_ent=const(max(w_ent, 0.0)),
        )

    def start_epoch(self, epoch, history, optimizer) -> None:
        self._control = self.schedule(epoch)

    def control(self, inputs: StepInputs) -> Control:
        return self._control

    def moves_rho(self) -> bool:
        return True

    def eval_rho(self) -> float:
        return float(self._control.rho)
