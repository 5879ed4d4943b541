"""Dynamic Weight Average: weights from how fast each loss term fell over the last two epochs.

Liu, Johns, Davison (2019), "End-to-End Multi-Task Learning with Attention", CVPR. With the epoch-mean losses
Lbar_k of the four terms (reconstruction, KL, ranking, entropy alignment):
w_k(t) = K softmax_k(r_k / T), r_k = Lbar_k(t-1) / Lbar_k(t-2), K = 4, T = 2 by default; w_k = 1 in the first
two epochs, which have no two finished epochs to compare. A term that falls more slowly gets more weight. rho
stays fixed from the options.

The epoch means are accumulated in :meth:`DWAArm.after_step` and written into the epoch's record
(``train_ce_mean``, ...); the next epochs read them back from the history they are given, so the arm keeps no
state across epochs and a resumed run weights exactly as an uninterrupted one.
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
from pydantic import Field

from ..schema import Section
from .base import WEIGHT_NAMES, Arm, Control, EpochMeans, LossTerms, StepInputs, const

# The keys of LossTerms.scalars(), in the order of WEIGHT_NAMES (ce is weighted by w_recon, and so on).
TERM_NAMES = ("ce", "kl", "rank", "ent")
RECORD_KEYS = tuple(f"train_{term}_mean" for term in TERM_NAMES)
# Guards the ratio against a term whose epoch mean is exactly 0 (an entropy gap that vanished).
_TINY = 1e-12


class DWAOptions(Section):
    kind: Literal["dwa"] = "dwa"
    rho: float = Field(0.1, ge=0.0, le=1.0, description="rho, held constant")
    temperature: float = Field(2.0, gt=0.0, le=1e3, description="softmax temperature T of the loss ratios")


def dwa_weights(previous: Sequence[float], before: Sequence[float], temperature: float) -> torch.Tensor:
    """K softmax(r / T) with r_k = previous_k / before_k: the DWA weights from two epochs' mean losses.

    Example::

        dwa_weights([1.0, 2.0], [1.0, 1.0], 2.0)  # 2 softmax([0.5, 1.0]) = tensor([0.7551, 1.2449])
    """
    prev = torch.tensor(previous, dtype=torch.float64)
    ratio = prev / torch.tensor(before, dtype=torch.float64).clamp_min(_TINY)
    return (len(prev) * torch.softmax(ratio / temperature, dim=0)).float()


class DWAArm(Arm):
    """Dynamic Weight Average (Liu, Johns, Davison, CVPR 2019): w_k = K softmax(Lbar_k(t-1) / Lbar_k(t-2) / T)."""

    kind = "dwa"
    Options = DWAOptions

    def __init__(self, options: DWAOptions, latent_dim: int) -> None:
        super().__init__(options, latent_dim)
        self._rho = const(options.rho)
        self._means = EpochMeans()
        self._control = self._make_control(torch.ones(len(WEIGHT_NAMES)))

    def _make_control(self, w: torch.Tensor) -> Control:
        return Control(rho=self._rho, w_recon=w[0], w_kl=w[1], w_rank=w[2], w_ent=w[3])

    def start_epoch(self, epoch, history, optimizer) -> None:
        self._means.reset()
        w = torch.ones(len(WEIGHT_NAMES))
        last_two = history[-2:]
        if len(last_two) == 2 and all(key in record for record in last_two for key in RECORD_KEYS):
            before, previous = ([record[key] for key in RECORD_KEYS] for record in last_two)
            w = dwa_weights(previous, before, self.options.temperature)
        self._control = self._make_control(w)

    def control(self, inputs: StepInputs) -> Control:
        return self._control

    def after_step(self, terms: LossTerms, control: Control, optimizer) -> None:
        self._means.add(terms.scalars())

    def epoch_record(self) -> dict[str, float]:
        means = self._means.result()
        return {key: means[term] for key, term in zip(RECORD_KEYS, TERM_NAMES) if term in means}
