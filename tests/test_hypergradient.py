"""Hypergradient descent on the learning rate: it grows while steps agree, shrinks while they overshoot."""

from __future__ import annotations

import torch

from diffctl.arms.hypergradient import HypergradientLR


def _run(lr: float, steps: int = 6, lr_min: float = 1e-3, lr_max: float = 1.9) -> list[float]:
    theta = torch.nn.Parameter(torch.tensor([3.0, -2.0]))
    opt = torch.optim.SGD([theta], lr=lr)
    hyper = HypergradientLR(beta=0.01, lr_min=lr_min, lr_max=lr_max)
    lrs = []
    for _ in range(steps):
        opt.zero_grad()
        (0.5 * theta.pow(2).sum()).backward()  # f = |theta|^2 / 2: the best lr is 1
        opt.step()
        hyper.after_step(opt)
        lrs.append(opt.param_groups[0]["lr"])
    return lrs


def test_lr_grows_when_too_small_and_shrinks_when_too_large():
    small, large = _run(0.1), _run(1.8)
    assert small[1] == 0.1 and small[-1] > 0.11  # consecutive gradients agree
    assert large[1] == 1.8 and large[-1] < 1.7  # the iterate overshoots: gradients alternate


def test_lr_stays_within_its_bounds():
    assert max(_run(0.1, steps=30, lr_max=0.15)) == 0.15
    assert min(_run(1.8, steps=30, lr_min=1.75)) == 1.75
