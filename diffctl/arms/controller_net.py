"""The controller's network and its bound maps: the seed's MLP, its weights in one flat parameter, and the maps
that bound its five outputs (rho and the four loss weights). The arm around them is ``controller.py``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parameters_to_vector

from .base import floor_threshold

INIT_MARGIN = 1e-3  # init_at_defaults: how far inside its range (in units of the map's scale) an output starts


@dataclass(frozen=True)
class Bound:
    """A bound map: value = lower + scale * squash(raw), squash = softplus or sigmoid."""

    lower: float
    scale: float
    squash: Literal["softplus", "sigmoid"]

    def inverse(self, value: float) -> float:
        """The raw output giving ``value``, clamped INIT_MARGIN inside the open range of the map."""
        u = max((value - self.lower) / self.scale, INIT_MARGIN)
        if self.squash == "sigmoid":
            u = min(u, 1 - INIT_MARGIN)
            return math.log(u / (1 - u))
        return u + math.log(-math.expm1(-u))

    @property
    def floor(self) -> float:
        return floor_threshold(self.lower, self.scale)


# The seed's bound maps, in OUTPUT_NAMES order; the four weights are softplus maps applied as one vector.
BOUNDS = {
    "rho": Bound(0.0, 0.5, "sigmoid"),
    "w_recon": Bound(0.5, 1.0, "softplus"),
    "w_kl": Bound(0.1, 0.5, "softplus"),
    "w_rank": Bound(0.0, 1.0, "softplus"),
    "w_ent": Bound(0.0, 0.3, "softplus"),
}


class ControllerNet(nn.Module):
    """The seed's MLP (n -> hidden, LayerNorm, ReLU -> hidden, ReLU -> outputs), its weights in one flat parameter.

    Initialised as the equivalent ``nn.Sequential``. One tensor instead of eight, because the optimiser and the
    gradient clip pay a fixed cost per parameter tensor, which for a network this small is most of its cost.
    """

    def __init__(self, n_in: int, hidden: int, n_out: int) -> None:
        super().__init__()
        layers = nn.Sequential(
            nn.Linear(n_in, hidden), nn.LayerNorm(hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, n_out),
        )  # fmt: skip
        params = list(layers.parameters())
        self.shapes = [p.shape for p in params]
        self.sizes = [p.numel() for p in params]
        self.theta = nn.Parameter(parameters_to_vector(params).detach())
        self._plain_views: tuple[tuple[int, torch.dtype], list[torch.Tensor]] | None = None

    def tensors(self) -> list[torch.Tensor]:
        """Views of ``theta``: w1, b1, LayerNorm weight and bias, w2, b2, w3, b3.

        Outside grad mode (the steps between lookahead updates, evaluation) the views of the last such call are
        reused while ``theta`` keeps its storage: they carry no graph and alias its data, so they see every
        in-place update of the optimiser, and making them costs a controller step more than the MLP itself.
        """
        if torch.is_grad_enabled():
            return self._views()
        key = (self.theta.data_ptr(), self.theta.dtype)
        if self._plain_views is None or self._plain_views[0] != key:
            self._plain_views = key, self._views()
        return self._plain_views[1]

    def _views(self) -> list[torch.Tensor]:
        return [t.view(shape) for t, shape in zip(self.theta.split(self.sizes), self.shapes)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w1, b1, ln_w, ln_b, w2, b2, w3, b3 = self.tensors()
        h = F.relu(F.layer_norm(F.linear(x, w1, b1), b1.shape, ln_w, ln_b))
        return F.linear(F.relu(F.linear(h, w2, b2)), w3, b3)
