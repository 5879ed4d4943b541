"""The ``lookahead`` objective of the controller: a one-step virtual update judged on a held-out batch.

theta' = theta - eta_v * grad_theta sum_k w_k L_k(theta) on the training batch (the gradient kept as a function
of the controller's outputs), then the controller descends the gradient of the outer objective L_out(theta') on a
further batch drawn with the trainer's generator from the outer data (below). The outer objective is "unweighted" in
the sense of *not weighted by the controller*: its own fixed term weights (``outer_weights``, the fixed arm's
defaults unless configured) with each decoder on its own code (rho = 0). This is the held-out remedy of
Auto-Lambda / Meta-Weight-Net / Learning-to-Reweight.

The model's own step uses the same gradient grad_theta sum_k w_k L_k, detached: the weighted loss never trains
the controller. ``torch.func.functional_call`` evaluates the outer objective at the virtual parameters.

Two options of the controller arm shape the lookahead (both ignored under ``objective: same_loss``, like
``virtual_lr``):

- ``lookahead_every: k`` (default 1): the lookahead update runs on every k-th step, counted globally across
  epochs (step ``epoch * steps_per_epoch + step_in_epoch``, so a run resumed from a checkpoint between epochs
  updates on the same steps as an uninterrupted one); ``steps_per_epoch`` is the same in every epoch. The steps
  between compute the controller's outputs as usual but without a graph to its parameters, and take a plain
  model step: no create_graph, no outer batch, no controller gradient (its optimiser skips it). An
  ``lr_control`` on the model's learning rate still acts on every step.
- ``outer_data``: ``train`` (default; outer batches drawn from the whole training split, which the model trains
  on too) or ``holdout``: ``holdout_fraction`` of the training split (default 0.1, rounded) becomes a meta split,
  chosen by a permutation seeded with ``data.split_seed`` (so every run seed of a config shares it, like val and
  test), disjoint from val and test; the model never trains on it (its epochs cover the rest of the training
  split) and the outer batches are drawn only from it.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from .base import Control, StepContext, StepInputs, const

OUTER_RHO = 0.0  # each decoder on its own code


def is_lookahead_step(inputs: StepInputs, every: int) -> bool:
    """Whether this step runs the lookahead update: every ``every``-th step, counted across epochs from 0."""
    return (inputs.epoch * inputs.steps_per_epoch + inputs.step_in_epoch) % every == 0


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


class OuterObjective:
    """The lookahead's outer objective for one model: what the step needs of the model (its parameters, their
    names, the module ``functional_call`` swaps them in) is gathered once, when the arm first meets the model.

    Example::

        outer = OuterObjective(context, outer_control({"w_recon": 1.0, "w_kl": 0.1, "w_rank": 0.5, "w_ent": 0.1}))
        value, model_grads = outer(total, virtual_lr=1e-3)
    """

    def __init__(self, context: StepContext, weights: Control) -> None:
        self.context = context
        names, params = zip(*context.model.named_parameters())
        self.names = tuple(f"model.{name}" for name in names)
        self.params = params
        self.module = _OuterObjective(context, weights)

    def __call__(self, total: torch.Tensor, virtual_lr: float) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The outer objective after one virtual SGD step on ``total``, and the model's gradient of ``total``.

        The outer value keeps its graph to whatever ``total`` depends on besides the model's parameters (the
        controller's outputs); the returned model gradients still carry that graph (detach them before use).
        The virtual parameters p - virtual_lr * g are made by two fused list operations (the same arithmetic,
        bit for bit, as one subtraction per parameter, at a fraction of its dispatch cost).
        """
        grads = torch.autograd.grad(total, self.params, create_graph=True)
        steps = torch._foreach_mul(grads, virtual_lr)
        virtual = torch._foreach_sub([p.detach() for p in self.params], steps)
        x, index = self.context.draw_batch()
        outer = functional_call(self.module, dict(zip(self.names, virtual)), (x, index))
        return outer, list(grads)
