"""The interface every arm implements: given the step's inputs, which loss weights and which rho to use.

An arm receives everything it uses as arguments (epoch, history, the step's encodings and loss terms, the
optimizer), never as attributes injected by the trainer. Weights and rho are tensors so that an arm whose
outputs come from parameters receives gradients through the loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar, Sequence

import torch
from torch import nn

from ..model import Encoding

WEIGHT_NAMES = ("w_recon", "w_kl", "w_rank", "w_ent")


@dataclass
class Control:
    """What one training step uses. Each weight is a scalar tensor or a (2,) tensor (one per VAE: A, B).

    ``rho`` broadcasts against codes of shape (B, latent): a scalar, (B, 1) or (1, latent). ``penalty`` is an
    extra term added to the training loss (a regulariser of the arm's own parameters), or None.
    """

    rho: torch.Tensor
    w_recon: torch.Tensor
    w_kl: torch.Tensor
    w_rank: torch.Tensor
    w_ent: torch.Tensor
    penalty: torch.Tensor | None = None

    def weights(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name) for name in WEIGHT_NAMES}


@dataclass
class LossTerms:
    """The unweighted loss terms of one step. ``ce``, ``kl``, ``rank``: (2,) for (A, B); ``ent``: scalar.

    ``entropy``: (2,) mean decoder entropies H_A, H_B. ``extra``: optional upstream extras already weighted by
    their fixed config coefficients (not controlled by any arm).
    """

    ce: torch.Tensor
    kl: torch.Tensor
    rank: torch.Tensor
    ent: torch.Tensor
    entropy: torch.Tensor
    extra: torch.Tensor | None = None

    def weighted_total(self, control: Control) -> torch.Tensor:
        total = (
            (control.w_recon * self.ce).sum()
            + (control.w_kl * self.kl).sum()
            + (control.w_rank * self.rank).sum()
            + control.w_ent * self.ent
        )
        if self.extra is not None:
            total = total + self.extra
        if control.penalty is not None:
            total = total + control.penalty
        return total

    def scalars(self) -> dict[str, torch.Tensor]:
        """Detached per-term values, as the arms that read loss histories (DWA, StateNet) see them."""
        return {
            "ce": self.ce.detach().sum(),
            "kl": self.kl.detach().sum(),
            "rank": self.rank.detach().sum(),
            "ent": self.ent.detach(),
        }


@dataclass
class StepContext:
    """The trainer's objects an arm may use to look beyond the step's own loss; arms read them, never step them.

    ``loss_terms(model, encoding, x, index, rho)``: the trainer's unweighted terms (its config and generator
    bound). ``draw_batch()``: a further batch ``(x, index)`` drawn with the trainer's generator from the training
    split, or from the part the arm holds out (:meth:`Arm.outer_holdout`).
    """

    model: nn.Module
    loss_terms: Callable[..., LossTerms]
    draw_batch: Callable[[], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class StepInputs:
    """What an arm may read to set one step's control, before decoding."""

    epoch: int  # 0-based
    step_in_epoch: int
    steps_per_epoch: int
    x: torch.Tensor
    index: torch.Tensor
    encoding: Encoding
    extras: dict = field(default_factory=dict)
    context: StepContext | None = None


class Arm(nn.Module):
    """Base class of the arms. Subclasses set ``kind`` and ``Options`` and implement :meth:`control`."""

    kind: ClassVar[str]

    def __init__(self, options, latent_dim: int) -> None:
        super().__init__()
        self.options = options
        self.latent_dim = latent_dim

    def start_epoch(self, epoch: int, history: Sequence[dict], optimizer: torch.optim.Optimizer) -> None:
        """Called before each epoch with the records of the finished epochs."""

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters the trainer's optimiser updates (with the model's). An arm whose network must not be
        trained by the loss (the legacy StateNet) returns fewer than it holds."""
        return [p for p in self.parameters() if p.requires_grad]

    def control(self, inputs: StepInputs) -> Control:
        raise NotImplementedError

    def outer_holdout(self) -> float:
        """The fraction of the training split the arm's outer objective holds out: the trainer never trains the
        model on it and ``StepContext.draw_batch`` draws only from it. 0: none, outer batches from the whole
        training split."""
        return 0.0

    def backward(self, total: torch.Tensor, inputs: StepInputs) -> None:
        """Turn the step's total loss into ``.grad`` of the model's and the arm's parameters (before clipping).

        Plain backpropagation by default; an arm whose parameters learn from another objective (a lookahead
        controller) overrides it.
        """
        total.backward()

    def after_step(self, terms: LossTerms, control: Control, optimizer: torch.optim.Optimizer) -> None:
        """Called after the optimiser step with the step's terms and control."""

    def epoch_record(self) -> dict[str, float]:
        """Arm-specific instruments for the epoch's record (reset by the arm at :meth:`start_epoch`)."""
        return {}

    def moves_rho(self) -> bool:
        """Whether rho can differ from a constant; then the record also holds metrics at the arm's rho."""
        return False

    def eval_rho(self) -> float:
        """The rho at which ``*_at_rho`` metrics are measured (the epoch's mean rho by default)."""
        raise NotImplementedError


def const(value: float) -> torch.Tensor:
    return torch.tensor(float(value))


def floor_threshold(lower: float, scale: float = 1.0) -> float:
    """The value at or under which a weight counts as at its floor: 1.01 * ``lower`` for a positive bound,
    0.01 * ``scale`` for a bound of 0 (``scale``: the factor in front of the output's squashing function)."""
    return 1.01 * lower if lower > 0 else 0.01 * scale


class EpochMeans:
    """Per-epoch means of named step values, summed as float64 tensors so that no step waits on ``.item()``.

    Example::

        means = EpochMeans()
        means.add({"ce": torch.tensor(2.0)}); means.add({"ce": torch.tensor(4.0)})
        means.result()  # {"ce": 3.0}
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._sums: dict[str, torch.Tensor] = {}
        self._counts: dict[str, int] = {}

    def add(self, values: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for name, value in values.items():
                value = value.detach().to(torch.float64).mean()
                if name in self._sums:
                    self._sums[name] += value
                    self._counts[name] += 1
                else:
                    self._sums[name] = value.clone()
                    self._counts[name] = 1

    def result(self) -> dict[str, float]:
        return {name: float(total) / self._counts[name] for name, total in self._sums.items()}
