"""The ``lookahead`` objective of the controller: a one-step virtual update judged on a held-out batch.

theta' = theta - eta_v * grad_theta sum_k w_k L_k(theta) on the training batch (the gradient kept as a function
of the controller's outputs), then the controller descends the gradient of the outer objective L_out(theta') on a
further batch drawn from the train split with the trainer's generator. The outer objective is "unweighted" in
the sense of *not weighted by the controller*: its own fixed term weights (``outer_weights``, the fixed arm's
defaults unless configured) with each decoder on its own code (rho = 0). This is the held-out remedy of
Auto-Lambda / Meta-Weight-Net / Learning-to-Reweight.

The model's own step uses the same gradient grad_theta sum_k w_k L_k, detached: the weighted loss never trains
the controller. ``torch.func.functional_call`` evaluates the outer objective at the virtual parameters.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from .base import Control, StepContext, const

OUTER_RHO = 0.0  # each decoder on its own code


class _OuterObjective(nn.Module):
    """The outer objective as a module of the model, so that ``functional_call`` can swap in virtual weights."""

    def __init__(self, context: StepContext, weights: Control) -> None:
        super().__init__()
        self.model = context.model
        self.context = context
        self.weights = weights

    def forward(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        encoding = self.model.encode(x)
        terms = self.context.loss_terms(self.model, encoding, x, index, self.weights.rho)
        return terms.weighted_total(self.weights)


def outer_control(weights: dict[str, float]) -> Control:
    """The fixed control of the outer objective: rho = 0 and the given term weights."""
    return Control(rho=const(OUTER_RHO), **{name: const(value) for name, value in weights.items()})


def outer_objective(
    total: torch.Tensor, context: StepContext, virtual_lr: float, weights: Control
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The outer objective after one virtual SGD step on ``total``, and the model's gradient of ``total``.

    The outer value keeps its graph to whatever ``total`` depends on besides the model's parameters (the
    controller's outputs); the returned model gradients still carry that graph (detach them before use).
    """
    names, params = zip(*context.model.named_parameters())
    grads = torch.autograd.grad(total, params, create_graph=True)
    virtual = {f"model.{name}": p.detach() - virtual_lr * g for name, p, g in zip(names, params, grads)}
    x, index = context.draw_batch()
    outer = functional_call(_OuterObjective(context, weights), virtual, (x, index))
    return outer, list(grads)
