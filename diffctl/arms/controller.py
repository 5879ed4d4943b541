"""The seed's differentiable controller and its design space: the arm whose outputs are tensors in the loss.

An MLP (n_stats -> hidden, LayerNorm, ReLU -> hidden, ReLU -> outputs; it and the bound maps in
``controller_net.py``) reads normalised batch statistics (``statistics.py``: registry, source, normalisation) and
emits rho and the four loss weights through the seed's bound maps: rho = 0.5 sigmoid, w_recon = softplus + 0.5,
w_kl = 0.5 softplus + 0.1, w_rank = softplus, w_ent = 0.3 softplus. The options under ``arm``
(``kind: controller``) are the axes the study searches:

- ``stats`` (names from the registry; default: eight of them), ``stats_source`` (``previous`` by default, see
  ``statistics.py`` for why) and ``detach_stats`` (default true; false lets the VAEs lower their own weights
  through the statistics).
- ``rho_granularity``: ``batch`` (one rho), ``sample`` (a (B, 1) rho from per-sample statistics; the weights
  come from the batch mean of the per-sample raw outputs), ``latent`` (a (1, latent) rho from batch statistics).
- ``warmup``: ``none``; ``hold`` (the defaults for ``warmup_epochs``); ``blend`` (linear from the defaults to the
  controller over ``warmup_epochs``, step by step); ``init_at_defaults`` (last layer zero, biases through the
  inverse bound maps). A default on a bound (the fixed arm's w_kl = 0.1 is w_kl's floor) cannot be reached by
  an open map: the inverse then starts 0.1% of the output's scale above the bound.
- ``regularizer`` (strength c, on the weights as used): ``none`` (the seed, the negative control: every weight
  slides to its floor); ``log_barrier`` -c sum log w (optimum w = c / L); ``anchor`` c sum (log w - log w0)^2;
  ``normalized``: weights rescaled to the defaults' sum, then the barrier.
- ``objective``: ``same_loss`` (the seed) or ``lookahead`` (``lookahead.py``, with ``virtual_lr``,
  ``outer_weights``, ``lookahead_every`` and ``outer_data`` / ``holdout_fraction``, all four ignored under
  same_loss); under lookahead the statistics are always detached, since the model's step uses the weights as
  constants anyway, and the regulariser's penalty joins the outer objective (on the steps that update).
- ``lr_control``: ``none`` or ``hypergradient`` (``hypergradient.py``) on the model's learning rate.
- ``controller_lr``: the learning rate of the controller's parameter group (default: the model's).

Instruments per epoch: ``<output>_at_floor`` (fraction of steps within 1% of the lower bound, see
:func:`~diffctl.arms.base.floor_threshold`; for rho also ``rho_at_ceiling``), ``controller_grad_norm`` (mean over
steps of the norm of the gradient reaching the controller, before clipping) and ``controller_param_drift``
(||theta(t) - theta(0)||).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, create_model, field_validator, model_validator

from ..model import Encoding
from ..schema import Section
from .base import WEIGHT_NAMES, Arm, Control, StepContext, StepInputs
from .controller_net import BOUNDS, ControllerNet
from .fixed import FixedOptions
from .hypergradient import HypergradientLR
from .lookahead import OuterObjective, is_lookahead_step, outer_control
from .statistics import (
    RunningNormaliser,
    StatPlan,
    StatsSource,
    check_stats,
    decoded_quantities,
    default_stats,
    encoder_view,
    needs_decoder,
)

OUTPUT_NAMES = ("rho", *WEIGHT_NAMES)
def _fixed_arm_fields(name: str, without: tuple[str, ...]) -> type[Section]:
    """A section with the fixed arm's fields (ranges and defaults) except ``without``, every one a number."""
    fields = FixedOptions.model_fields.items()
    return create_model(name, __base__=Section, **{n: (float, f) for n, f in fields if n not in without})


ControlValues = _fixed_arm_fields("ControlValues", ("kind",))  # rho and the four weights
OuterWeights = _fixed_arm_fields("OuterWeights", ("kind", "rho"))  # the outer objective decodes at rho = 0


class ControllerOptions(Section):
    kind: Literal["controller"] = "controller"
    hidden: int = Field(32, ge=1, le=1024, description="width of the MLP's two hidden layers")
    stats_source: StatsSource = Field(
        "previous", description="decoder-side statistics from the previous step, an extra decode at rho = 0, or none"
    )
    stats: list[str] | None = Field(None, description="statistics the MLP reads (null: the source's default set)")
    detach_stats: bool = Field(True, description="false lets the VAEs lower their own weights through the statistics")
    rho_granularity: Literal["batch", "sample", "latent"] = Field(
        "batch", description="one rho per batch, per sample (B, 1) or per latent dimension (1, latent)"
    )
    warmup: Literal["none", "hold", "blend", "init_at_defaults"] = Field(
        "none", description="hold the defaults, blend from them to the controller, or start the MLP at them"
    )
    warmup_epochs: int = Field(5, ge=0, le=10_000, description="length of a hold or blend warm-up, in epochs")
    defaults: ControlValues = Field(
        ControlValues(), description="rho and weights of a warm-up, of init_at_defaults and of the anchor"
    )
    regularizer: Literal["none", "log_barrier", "anchor", "normalized"] = Field(
        "none", description="penalty on the weights as used (none: every weight slides to its floor)"
    )
    regularizer_strength: float = Field(1.0, ge=0.0, le=1e3, description="the regulariser's strength c")
    objective: Literal["same_loss", "lookahead"] = Field(
        "same_loss", description="what trains the controller: the loss it weights, or a held-out loss after a step"
    )
    virtual_lr: float | None = Field(
        None, gt=0.0, le=10.0, description="learning rate of lookahead's virtual step (null: the model's current one)"
    )
    outer_weights: OuterWeights = Field(
        OuterWeights(), description="fixed term weights of lookahead's outer objective (decoded at rho = 0)"
    )
    lookahead_every: int = Field(1, ge=1, le=10_000, description="lookahead: update every k-th step across epochs")
    outer_data: Literal["train", "holdout"] = Field(
        "train", description="lookahead's outer batches: the training split, or a part of it the model never trains on"
    )
    holdout_fraction: float = Field(
        0.1, ge=0.01, le=0.5, description="part of the training split outer_data holdout keeps out (data.split_seed)"
    )
    lr_control: Literal["none", "hypergradient"] = Field(
        "none", description="hypergradient: adapt the model's learning rate by hypergradient descent"
    )
    hypergradient_beta: float = Field(1e-6, ge=0.0, le=1.0, description="step size of the hypergradient descent")
    lr_min: float = Field(1e-5, gt=0.0, le=10.0, description="lowest learning rate hypergradient may set")
    lr_max: float = Field(1e-2, gt=0.0, le=10.0, description="highest learning rate hypergradient may set")
    controller_lr: float | None = Field(
        None, gt=0.0, le=10.0, description="learning rate of the controller's parameters (null: optim.lr)"
    )

    @field_validator("stats")
    @classmethod
    def _known_stats(cls, names: list[str] | None, info) -> list[str] | None:
        if names is not None and "stats_source" in info.data:
            problem = check_stats(tuple(names), info.data["stats_source"])
            if problem:
                raise ValueError(problem)
        return names

    @model_validator(mode="after")
    def _consistent(self) -> "ControllerOptions":
        if self.defaults.rho > BOUNDS["rho"].scale:
            raise ValueError(f"defaults.rho {self.defaults.rho} exceeds the controller's rho range (0, 0.5)")
        if self.lr_min > self.lr_max:
            raise ValueError(f"lr_min {self.lr_min} exceeds lr_max {self.lr_max}")
        if self.regularizer == "anchor":
            zero = [name for name in WEIGHT_NAMES if getattr(self.defaults, name) <= 0]
            if zero:
                raise ValueError(f"defaults.{zero[0]} must be > 0 for regularizer 'anchor' (log w0)")
        return self

    def inert_keys(self) -> dict[str, str]:
        """The keys that change nothing under the other options, each with the option that makes it so (a study's
        ablation calls an option that changes only these "not applicable", study.phases.ablate)."""
        inert: dict[str, str] = {}
        if self.objective == "same_loss":
            inert.update(dict.fromkeys(("virtual_lr", "outer_weights", "lookahead_every", "outer_data",
                                        "holdout_fraction"), "objective same_loss"))
        elif self.outer_data == "train":
            inert["holdout_fraction"] = "outer_data train"
        if self.warmup not in ("hold", "blend"):
            inert["warmup_epochs"] = f"warmup {self.warmup}"
        if self.regularizer == "none":
            inert["regularizer_strength"] = "regularizer none"
        if self.lr_control == "none":
            inert.update(dict.fromkeys(("hypergradient_beta", "lr_min", "lr_max"), "lr_control none"))
        return inert


def first_controlled_epoch(options: ControllerOptions) -> int:
    """The first epoch (0-based) whose control comes wholly from the controller (after a hold or blend warm-up)."""
    return options.warmup_epochs if options.warmup in ("hold", "blend") else 0


class ControllerArm(Arm):
    kind = "controller"
    Options = ControllerOptions

    def __init__(self, options: ControllerOptions, latent_dim: int) -> None:
        super().__init__(options, latent_dim)
        self.stat_names = tuple(options.stats) if options.stats else default_stats(options.stats_source)
        self.stat_plan = StatPlan(self.stat_names)
        self._needs_decoder = needs_decoder(self.stat_names)
        self.rho_width = latent_dim if options.rho_granularity == "latent" else 1
        self.normaliser = RunningNormaliser(len(self.stat_names))
        self.net = ControllerNet(len(self.stat_names), options.hidden, self.rho_width + len(WEIGHT_NAMES))
        if options.warmup == "init_at_defaults":
            self._init_at_defaults()
        self.register_buffer("initial_theta", self.net.theta.detach().clone())
        self.register_buffer("previous_decoded", torch.zeros(2, 2))  # last step's (CE, H) x (A, B)
        self.register_buffer("has_previous", torch.zeros((), dtype=torch.bool))
        bounds = [BOUNDS[name] for name in WEIGHT_NAMES]
        self._w_lower = torch.tensor([b.lower for b in bounds])
        self._w_scale = torch.tensor([b.scale for b in bounds])
        self._floors = torch.tensor([BOUNDS[name].floor for name in OUTPUT_NAMES])
        self._default_rho = torch.tensor(options.defaults.rho)
        self._default_w = torch.tensor([getattr(options.defaults, name) for name in WEIGHT_NAMES])
        self.outer_weights = outer_control(options.outer_weights.model_dump())
        self.hypergradient = (
            HypergradientLR(options.hypergradient_beta, options.lr_min, options.lr_max)
            if options.lr_control == "hypergradient"
            else None
        )
        self._model_lr = 0.0
        self._last_control: Control | None = None
        self._outer: OuterObjective | None = None  # the lookahead's outer objective, made for the first context met
        self._reset_instruments()

    def _init_at_defaults(self) -> None:
        *_, w3, b3 = self.net.tensors()
        bias = [BOUNDS["rho"].inverse(self.options.defaults.rho)] * self.rho_width
        bias += [BOUNDS[name].inverse(getattr(self.options.defaults, name)) for name in WEIGHT_NAMES]
        with torch.no_grad():
            w3.zero_()
            b3.copy_(torch.tensor(bias))

    def _reset_instruments(self) -> None:
        self._step_values: list[torch.Tensor] = []  # per step: mean rho and the four weights, as used
        self._grad_norm_sum = torch.zeros((), dtype=torch.float64)

    # --- the control of one step ---------------------------------------------------------------------------
    def statistics(self, inputs: StepInputs) -> torch.Tensor:
        """The raw statistics of this step: (B, n) for a per-sample rho, else (1, n)."""
        o = self.options
        detach = o.detach_stats or o.objective == "lookahead"
        encoding = inputs.encoding
        if detach and torch.is_grad_enabled():  # without grad mode nothing joins a graph anyway
            encoding = Encoding(encoding.mu.detach(), encoding.logvar.detach())
        view = encoder_view(encoding, inputs.index, self.stat_names)
        if self._needs_decoder:
            if o.stats_source == "previous" and bool(self.has_previous):
                view.ce, view.ent = self.previous_decoded.unsqueeze(-1).unbind(0)
            else:
                with torch.set_grad_enabled(torch.is_grad_enabled() and not detach):
                    logits = torch.stack(inputs.context.model.decode(encoding.mu))
                    view.ce, view.ent = decoded_quantities(logits, inputs.x)
        return self.stat_plan.matrix(view, o.rho_granularity == "sample")

    def outputs(self, stats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The bounded outputs for raw statistics: rho ((), (B, 1) or (1, latent)) and the weights (4,)."""
        raw = self.net(self.normaliser(stats))
        granularity, r = self.options.rho_granularity, self.rho_width
        if granularity == "sample":
            rho_raw, w_raw = raw[:, :1], raw[:, 1:].mean(0)
        elif granularity == "latent":
            rho_raw, w_raw = raw[:, :r], raw[0, r:]
        else:
            rho_raw, w_raw = raw[0, 0], raw[0, 1:]
        rho = torch.sigmoid(rho_raw).mul(BOUNDS["rho"].scale).add(BOUNDS["rho"].lower)  # lower + scale * sigmoid
        return rho, self._w_lower + self._w_scale * F.softplus(w_raw)

    def _warmed(self, rho: torch.Tensor, w: torch.Tensor, inputs: StepInputs) -> tuple[torch.Tensor, torch.Tensor]:
        o = self.options
        if o.warmup not in ("hold", "blend") or o.warmup_epochs == 0:
            return rho, w
        progress = (inputs.epoch + inputs.step_in_epoch / inputs.steps_per_epoch) / o.warmup_epochs
        if progress >= 1:
            return rho, w
        if o.warmup == "hold":
            return self._default_rho.expand(rho.shape), self._default_w
        return progress * rho + (1 - progress) * self._default_rho, progress * w + (1 - progress) * self._default_w

    def _regularised(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        o, c = self.options, self.options.regularizer_strength
        if o.regularizer == "normalized":
            w = self._default_w.sum() * w / w.sum()
        if o.regularizer == "none" or not w.requires_grad:
            return w, None
        if o.regularizer == "anchor":
            return w, c * (w.log() - self._default_w.log()).pow(2).sum()
        return w, -c * w.log().sum()

    def control(self, inputs: StepInputs) -> Control:
        o = self.options
        learns = o.objective != "lookahead" or is_lookahead_step(inputs, o.lookahead_every)
        with torch.set_grad_enabled(torch.is_grad_enabled() and learns):  # between lookahead steps: no graph
            rho, w = self._warmed(*self.outputs(self.statistics(inputs)), inputs)
            w, penalty = self._regularised(w)
        self._last_control = Control(rho, *w.unbind(), penalty=penalty)
        return self._last_control

    # --- learning and bookkeeping --------------------------------------------------------------------------
    def start_epoch(self, epoch, history, optimizer) -> None:
        self._reset_instruments()
        self._model_lr = optimizer.param_groups[0]["lr"]
        if self.options.controller_lr is not None:
            for group in optimizer.param_groups:
                if any(p is self.net.theta for p in group["params"]):
                    group["lr"] = self.options.controller_lr
        if self.hypergradient is not None:
            self.hypergradient.reset()

    def outer_holdout(self) -> float:
        o = self.options
        return o.holdout_fraction if o.objective == "lookahead" and o.outer_data == "holdout" else 0.0

    def virtual_lr(self) -> float:
        """The lookahead's virtual step size: ``virtual_lr``, or the model's learning rate when unset."""
        return self.options.virtual_lr or self._model_lr

    def outer(self, total: torch.Tensor, context: StepContext) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The lookahead's outer objective after a virtual step on ``total`` (see ``lookahead.py``)."""
        return self._outer_for(context)(total, self.virtual_lr())

    def _outer_for(self, context: StepContext) -> OuterObjective:
        """The outer objective of ``context``'s model, made when first needed."""
        if self._outer is None or self._outer.context is not context:
            self._outer = OuterObjective(context, self.outer_weights)
        return self._outer

    def backward(self, total: torch.Tensor, inputs: StepInputs) -> None:
        control = self._last_control
        controlled = control.rho.requires_grad or control.w_recon.requires_grad
        if self.options.objective == "lookahead" and controlled:
            outer, model_grads = self.outer(total, inputs.context)
            objective = outer if control.penalty is None else outer + control.penalty
            (self.net.theta.grad,) = torch.autograd.grad(objective, [self.net.theta])
            for p, g in zip(self._outer_for(inputs.context).params, model_grads):
                p.grad = g.detach()
        else:
            total.backward()
        if self.net.theta.grad is not None:
            self._grad_norm_sum.add_(self.net.theta.grad.norm().double())

    @torch.no_grad()
    def after_step(self, terms, control, optimizer) -> None:
        weights = [getattr(control, name) for name in WEIGHT_NAMES]
        self._step_values.append(torch.stack([control.rho.mean(), *weights]))
        self.previous_decoded.copy_(torch.stack((terms.ce, terms.entropy)))
        self.has_previous.fill_(True)
        if self.hypergradient is not None:
            self.hypergradient.after_step(optimizer)
        self._model_lr = optimizer.param_groups[0]["lr"]

    def epoch_record(self) -> dict[str, float]:
        values = torch.stack(self._step_values) if self._step_values else torch.empty(0, len(OUTPUT_NAMES))
        n = max(len(values), 1)
        at_floor = (values <= self._floors).sum(0)
        record = {f"{name}_at_floor": float(at_floor[i]) / n for i, name in enumerate(OUTPUT_NAMES)}
        rho_ceiling = BOUNDS["rho"].lower + 0.99 * BOUNDS["rho"].scale
        record["rho_at_ceiling"] = float((values[:, 0] >= rho_ceiling).sum()) / n
        record["controller_grad_norm"] = float(self._grad_norm_sum) / n
        record["controller_param_drift"] = float((self.net.theta.detach() - self.initial_theta).norm())
        return record

    def moves_rho(self) -> bool:
        return True

    def eval_rho(self) -> float:
        """The epoch's mean rho (for a per-latent or per-sample rho: the mean over its elements and steps)."""
        if not self._step_values:
            return self.options.defaults.rho
        return float(torch.stack(self._step_values)[:, 0].mean())
