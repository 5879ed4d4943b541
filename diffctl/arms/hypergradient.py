"""Hypergradient descent on the model's learning rate (Baydin et al. 2018, "Online Learning Rate Adaptation with
Hypergradient Descent"), for AdamW, bounded.

With theta_t = theta_{t-1} - alpha * u_{t-1}, the derivative of the loss at theta_t with respect to alpha is
-<g_t, u_{t-1}>, so gradient descent on alpha reads alpha += beta * <g_t, u_{t-1}>, clipped to [lr_min, lr_max].
For AdamW u_{t-1} is the previous update per unit learning rate, measured as (theta_{t-2} - theta_{t-1}) / alpha:
the Adam direction m/(sqrt(v) + eps) plus the decoupled weight decay, exactly what alpha scaled.

Timing: the optimiser has already stepped when an arm sees the step's gradient (``after_step``), so the
hypergradient of step t sets the rate of step t + 1 (a one-step delay against the paper). The memory (last
parameters, last direction) is dropped at every epoch start, which keeps a run resumed from an epoch checkpoint
identical to an uninterrupted one; the rate itself lives in the optimiser's state.
"""

from __future__ import annotations

import torch


class HypergradientLR:
    """Adapts the learning rate of one optimiser parameter group from the gradient and the previous update."""

    def __init__(self, beta: float, lr_min: float, lr_max: float, group: int = 0) -> None:
        self.beta, self.lr_min, self.lr_max, self.group = beta, lr_min, lr_max, group
        self.reset()

    def reset(self) -> None:
        self._last_params: list[torch.Tensor] | None = None
        self._last_direction: list[torch.Tensor] | None = None

    @torch.no_grad()
    def after_step(self, optimizer: torch.optim.Optimizer) -> float | None:
        """Call after ``optimizer.step()`` with the step's gradients still in ``.grad``; returns the hypergradient
        <g_t, u_{t-1}> used, or None while the memory holds no previous update yet."""
        group = optimizer.param_groups[self.group]
        params = [p for p in group["params"] if p.grad is not None]
        lr = group["lr"]
        used = None
        if self._last_direction is not None:
            used = float(sum((p.grad * u).sum() for p, u in zip(params, self._last_direction)))
            group["lr"] = min(max(lr + self.beta * used, self.lr_min), self.lr_max)
        if self._last_params is not None:
            self._last_direction = [(last - p) / lr for last, p in zip(self._last_params, params)]
        self._last_params = [p.detach().clone() for p in params]
        return used
