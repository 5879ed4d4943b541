"""The legacy StateNet: a small network that reads the training state once per epoch and nudges the loss weights
and the learning rate through ``.item()`` — so it never receives a gradient.

Reproduced from the upstream v5.5 design (the public "Ternary VAE"), because the study must show in numbers what
the redesign fixes. State s = [H_A, H_B, KL_A, KL_B, loss ratio, rho, lambda_A, lambda_B, lambda_ent] (9 numbers,
the previous epoch's means); network 9 -> 32 (LayerNorm, tanh) -> 8 -> 32 (ReLU) -> 4 (tanh), 1,068 parameters,
as upstream; outputs Delta = (Delta_lr, Delta_A, Delta_B, Delta_ent), applied as Python floats:
lambda <- clip(lambda + 0.01 Delta), lr <- clip(lr (1 + 0.05 Delta_lr), 1e-6, 0.01), with upstream's bounds
lambda_A, lambda_B in [0.5, 0.95] and lambda_ent in [0.15, 0.75]. The weights are upstream's:
w_recon = (lambda_A, lambda_B), w_kl = beta (lambda_A, lambda_B), w_ent = lambda_ent; w_rank and rho are fixed.

Upstream's fifth input was a gradient-norm ratio of its gradient-balancing scheme, which this project does not
have; the ratio of the two VAEs' epoch-mean losses (CE + KL, B over A) stands in for it.

The network's parameters keep ``requires_grad=True``, as upstream, yet their ``grad`` stays None: its outputs
leave the graph through ``.item()``. :meth:`StateNetArm.trainable_parameters` keeps them out of the optimiser,
so the arm's random initial map is all it ever applies. The records say so: ``controller_grad_norm``,
``controller_param_drift`` and ``statenet_params_with_grad`` are measured, and they are 0.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from ..schema import Section
from .base import Arm, Control, EpochMeans, LossTerms, StepInputs, const, floor_threshold

# Upstream's modulation scales and bounds.
LAMBDA_STEP = 0.01
LR_STEP = 0.05
LAMBDA_VAE_BOUNDS = (0.5, 0.95)
LAMBDA_ENT_BOUNDS = (0.15, 0.75)
LR_BOUNDS = (1e-6, 0.01)
# The state vector's entries; the first five are the previous epoch's means, recorded under "statenet_<name>".
MEASURED = ("H_A", "H_B", "kl_A", "kl_B", "loss_ratio")


class StateNetOptions(Section):
    kind: Literal["statenet"] = "statenet"
    rho: float = Field(0.1, ge=0.0, le=1.0, description="rho, held constant")
    # Initial lambdas (upstream's defaults), inside upstream's clip bounds.
    lambda_a: float = Field(
        0.7, ge=LAMBDA_VAE_BOUNDS[0], le=LAMBDA_VAE_BOUNDS[1], description="initial weight of VAE-A's CE + beta KL"
    )
    lambda_b: float = Field(
        0.7, ge=LAMBDA_VAE_BOUNDS[0], le=LAMBDA_VAE_BOUNDS[1], description="initial weight of VAE-B's CE + beta KL"
    )
    lambda_ent: float = Field(
        0.3, ge=LAMBDA_ENT_BOUNDS[0], le=LAMBDA_ENT_BOUNDS[1], description="initial entropy-alignment weight"
    )
    # KL weight inside each VAE's loss (L_X = CE_X + beta KL_X) and the ranking weight: not controlled.
    beta: float = Field(0.1, ge=0.0, le=1e3, description="KL weight inside each VAE's loss (not controlled)")
    w_rank: float = Field(0.5, ge=0.0, le=1e3, description="ranking weight (not controlled)")


class StateNet(nn.Module):
    """Upstream's autodecoder-shaped MLP: state (9) -> tanh(LayerNorm) (32) -> code (8) -> ReLU (32) -> tanh (4)."""

    def __init__(self, state_dim: int = 9, hidden: int = 32, code: int = 8, outputs: int = 4) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(state_dim, hidden), nn.LayerNorm(hidden), nn.Tanh(), nn.Linear(hidden, code)
        )
        self.decoder = nn.Sequential(nn.Linear(code, hidden), nn.ReLU(), nn.Linear(hidden, outputs), nn.Tanh())

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(state))


def _clip(value: float, bounds: tuple[float, float]) -> float:
    return min(max(value, bounds[0]), bounds[1])


class StateNetArm(Arm):
    """The legacy StateNet (upstream Ternary VAE v5.5): per-epoch deltas applied with ``.item()``; learns nothing."""

    kind = "statenet"
    Options = StateNetOptions

    def __init__(self, options: StateNetOptions, latent_dim: int) -> None:
        super().__init__(options, latent_dim)
        self.net = StateNet()
        # theta(0), so that the recorded drift is measured rather than asserted.
        self.register_buffer("initial_params", self._flat_params().detach().clone())
        self.lambdas = [options.lambda_a, options.lambda_b, options.lambda_ent]
        self._means = EpochMeans()
        self._params_with_grad = 0
        self._control = self._make_control()

    def trainable_parameters(self) -> list[nn.Parameter]:
        # Upstream never handed StateNet to an optimiser that the loss could reach; neither does this arm.
        return []

    def _flat_params(self) -> torch.Tensor:
        return torch.cat([p.reshape(-1) for p in self.net.parameters()])

    def _make_control(self) -> Control:
        o = self.options
        lam_vae = torch.tensor(self.lambdas[:2])
        w_ent = const(self.lambdas[2])
        return Control(rho=const(o.rho), w_recon=lam_vae, w_kl=o.beta * lam_vae, w_rank=const(o.w_rank), w_ent=w_ent)

    def state_vector(self, record: dict) -> torch.Tensor | None:
        """The 9-number training state from the previous epoch's record, or None when it lacks the means."""
        if any(f"statenet_{name}" not in record for name in MEASURED):
            return None
        measured = [record[f"statenet_{name}"] for name in MEASURED]
        return torch.tensor([*measured, self.options.rho, *self.lambdas], dtype=torch.float32)

    def start_epoch(self, epoch, history, optimizer) -> None:
        self._means.reset()
        self._params_with_grad = 0
        state = self.state_vector(history[-1]) if history else None
        if state is not None:
            # The defect reproduced: each output leaves the graph as a Python float.
            corrections = self.net(state)
            d_lr, d_a, d_b, d_ent = (corrections[i].item() for i in range(4))
            self.lambdas = [
                _clip(self.lambdas[0] + LAMBDA_STEP * d_a, LAMBDA_VAE_BOUNDS),
                _clip(self.lambdas[1] + LAMBDA_STEP * d_b, LAMBDA_VAE_BOUNDS),
                _clip(self.lambdas[2] + LAMBDA_STEP * d_ent, LAMBDA_ENT_BOUNDS),
            ]
            lr = _clip(optimizer.param_groups[0]["lr"] * (1 + LR_STEP * d_lr), LR_BOUNDS)
            for group in optimizer.param_groups:
                group["lr"] = lr
        self._control = self._make_control()

    def control(self, inputs: StepInputs) -> Control:
        return self._control

    def after_step(self, terms: LossTerms, control: Control, optimizer) -> None:
        grads = [p.grad for p in self.net.parameters() if p.grad is not None]
        self._params_with_grad = max(self._params_with_grad, len(grads))
        grad_norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])) if grads else torch.zeros(())
        vae_loss = terms.ce.detach() + terms.kl.detach()
        self._means.add(
            {
                "H_A": terms.entropy[0],
                "H_B": terms.entropy[1],
                "kl_A": terms.kl[0],
                "kl_B": terms.kl[1],
                "loss_ratio": vae_loss[1] / vae_loss[0],
                "grad_norm": grad_norm,
            }
        )

    def epoch_record(self) -> dict[str, float]:
        means = self._means.result()
        record = {f"statenet_{name}": means[name] for name in MEASURED if name in means}
        record["controller_grad_norm"] = means.get("grad_norm", 0.0)
        record["controller_param_drift"] = float((self._flat_params().detach() - self.initial_params).norm())
        record["statenet_params_with_grad"] = self._params_with_grad
        record.update(zip(("statenet_lambda_A", "statenet_lambda_B", "statenet_lambda_ent"), self.lambdas))
        vae_floor, ent_floor = floor_threshold(LAMBDA_VAE_BOUNDS[0]), floor_threshold(LAMBDA_ENT_BOUNDS[0])
        at_floor = sum(lam <= vae_floor for lam in self.lambdas[:2]) / 2
        # w_kl = beta lambda sits at its floor exactly when lambda does.
        record.update(w_recon_at_floor=at_floor, w_kl_at_floor=at_floor)
        record["w_ent_at_floor"] = float(self.lambdas[2] <= ent_floor)
        return record

    def get_extra_state(self) -> dict:
        return {"lambdas": list(self.lambdas)}

    def set_extra_state(self, state: dict) -> None:
        self.lambdas = [float(v) for v in state["lambdas"]]
        self._control = self._make_control()
