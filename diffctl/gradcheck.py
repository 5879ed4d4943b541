"""``diffctl gradcheck``: does the gradient of the loss reach the arm's parameters, and through which outputs?

One training batch of a fresh run, at the first epoch whose control comes from the controller (after a hold or
blend warm-up). For each control output (rho and the four weights) it reports the norm of the gradient that
reaches the arm's parameters through that output alone (``torch.autograd.grad`` of the loss to the output, then
of the output to the parameters), and how many of the arm's parameter entries (scalars) receive a non-zero
gradient (``params_with_grad`` of ``params_total``), also per tensor (``tensors``; the controller's one flat
parameter counted as the eight layer tensors it holds). On one batch a healthy controller reaches only part of its
entries: a ReLU unit that the batch leaves inactive passes no gradient to its weights, and a last layer that starts
at zero (``warmup: init_at_defaults``) passes none to the layers before it on the first step.
For a ``lookahead`` controller it reports the same for the outer objective, which is what trains it. An arm
without parameters (fixed, scheduled) has no controller and says so; the legacy StateNet shows zero norms.

Example::

    diffctl gradcheck --config configs/seed_literal.yaml --json
"""

from __future__ import annotations

import json
import math

import torch

from .arms import WEIGHT_NAMES, Control
from .arms.controller import ControllerArm, first_controlled_epoch
from .config import Config, load_config
from .train import Trainer

OUTPUT_NAMES = ("rho", *WEIGHT_NAMES)
CONTROLLER_TENSORS = ("w1", "b1", "ln_w", "ln_b", "w2", "b2", "w3", "b3")  # ControllerNet.tensors(), in order
COUNTS_NOTE = (
    "counts are of single entries on one batch: a ReLU unit this batch leaves inactive passes no gradient to its "
    "weights, so a healthy controller reaches only part of them"
)
ZERO_LAST_LAYER_NOTE = "warmup init_at_defaults starts the last layer at zero: no gradient reaches the layers before it"


def _norm(grads) -> float:
    present = [g for g in grads if g is not None]
    return float(torch.nn.utils.get_total_norm(present)) if present else 0.0


def tensor_layout(arm: torch.nn.Module) -> list[tuple[str, int]]:
    """Name and size of each of the arm's parameter tensors, in ``parameters()`` order; the controller's flat
    parameter as the eight layer tensors it holds."""
    layout: list[tuple[str, int]] = []
    for name, param in arm.named_parameters():
        if isinstance(arm, ControllerArm) and param is arm.net.theta:
            layout += list(zip(CONTROLLER_TENSORS, arm.net.sizes))
        else:
            layout.append((name, param.numel()))
    return layout


def _tensor_counts(grads: list, params: list[torch.nn.Parameter], layout: list[tuple[str, int]]) -> dict:
    """{tensor name: [entries with a non-zero gradient, entries]} over ``layout``."""
    flat = torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)])
    parts = flat.split([size for _, size in layout])
    return {name: [int((part != 0).sum()), size] for (name, size), part in zip(layout, parts)}


def output_gradients(
    loss: torch.Tensor, control: Control, params: list[torch.nn.Parameter], layout: list[tuple[str, int]] | None = None
) -> dict:
    """Per output, the norm of the gradient reaching ``params`` through it; how many parameter entries it reaches
    (per tensor of ``layout`` too, when given)."""
    live = [p for p in params if p.requires_grad]
    values = {name: getattr(control, name) for name in OUTPUT_NAMES}
    in_graph = [name for name, value in values.items() if value.requires_grad] if live else []
    # One pass from the loss to every output, then a short one from each output to the parameters.
    d_outputs = (
        torch.autograd.grad(loss, [values[n] for n in in_graph], retain_graph=True, allow_unused=True)
        if in_graph
        else ()
    )
    outputs = {name: {"grad_norm": 0.0, "in_graph": name in in_graph} for name in OUTPUT_NAMES}
    for name, d_output in zip(in_graph, d_outputs):
        if d_output is not None:
            through = torch.autograd.grad(values[name], live, d_output, retain_graph=True, allow_unused=True)
            outputs[name].update(grad_norm=_norm(through), dloss_doutput_norm=float(d_output.norm()))
    grads = torch.autograd.grad(loss, live, retain_graph=True, allow_unused=True) if live else []
    reached = sum(int((g != 0).sum()) for g in grads if g is not None)
    report = {"outputs": outputs, "params_with_grad": reached, "grad_norm_total": _norm(grads)}
    if layout is not None:
        by_param = dict(zip(map(id, live), grads))
        report["tensors"] = _tensor_counts([by_param.get(id(p)) for p in params], params, layout)
    return report


def gradcheck(config: Config) -> dict:
    """The gradient report of ``config`` (see the module docstring) as a JSON-ready dict."""
    trainer = Trainer(config)
    arm = trainer.arm
    params = list(arm.parameters())
    report: dict = {"arm": config.arm.kind}
    if not params:
        message = f"arm {config.arm.kind!r} has no controller: it holds no parameters for a gradient to reach"
        return {**report, "controller": False, "message": message, "outputs": {}, "params_with_grad": 0,
                "params_total": 0}  # fmt: skip
    epoch = first_controlled_epoch(config.arm) if isinstance(arm, ControllerArm) else 0
    layout = tensor_layout(arm)
    trainer.epoch = epoch
    trainer.model.train()
    arm.start_epoch(epoch, [], trainer.optimizer)
    size = config.data.batch_size
    x, index = next(trainer.data.batches(trainer.split.train, size, trainer.generator))
    steps = math.ceil(len(trainer.split.train) / size)
    _, control, _, total = trainer.step_loss(x, index, 0, steps)
    report.update(controller=True, epoch=epoch + 1, epoch_note=_epoch_note(config, epoch), loss=total.item())
    if isinstance(arm, ControllerArm):
        report["warmup"] = config.arm.warmup
    report.update(output_gradients(total, control, params, layout))
    report["params_total"] = sum(p.numel() for p in params)
    if report["params_with_grad"] == 0:
        report["message"] = "no gradient reaches the arm's parameters: its outputs are not in the loss graph"
    if isinstance(arm, ControllerArm) and arm.options.objective == "lookahead":
        outer, _ = arm.outer(total, trainer.context)
        report["outer"] = {"loss": outer.item(), **output_gradients(outer, control, params, layout)}
        report["trained_by"] = "outer"
    return report


def _epoch_note(config: Config, epoch: int) -> str:
    """Why the check looks at this epoch (0-based ``epoch``)."""
    if epoch == 0:
        return "the first batch of a fresh run"
    return (f"a fresh run put at the first epoch whose control comes wholly from the controller, after the "
            f"{config.arm.warmup} warm-up of {epoch} epoch(s)")  # fmt: skip


def _text(report: dict) -> str:
    lines = [f"arm {report['arm']}"]
    if not report["controller"]:
        return "\n".join(lines + [report["message"]])
    sections = [("loss", report)] + ([("outer objective", report["outer"])] if "outer" in report else [])
    for title, part in sections:
        lines.append(f"{title} {part['loss']:.4f} at epoch {report['epoch']} ({report['epoch_note']}): "
                     "gradient norm per output")
        for name, entry in part["outputs"].items():
            state = f"{entry['grad_norm']:.3e}" if entry["in_graph"] else "not in the loss graph"
            lines.append(f"  {name:8s} {state}")
        tensors = part["tensors"]
        reached = sum(count > 0 for count, _ in tensors.values())
        lines.append(f"  parameter entries with a gradient: {part['params_with_grad']} of {report['params_total']}, "
                     f"in {reached} of {len(tensors)} tensors:")  # fmt: skip
        lines.append("    " + ", ".join(f"{name} {count}/{size}" for name, (count, size) in tensors.items()))
    if "message" in report:
        lines.append(report["message"])
    elif report["params_with_grad"] < report["params_total"]:
        lines.append(f"note: {COUNTS_NOTE}")
        if report.get("warmup") == "init_at_defaults":
            lines.append(f"note: {ZERO_LAST_LAYER_NOTE}")
    return "\n".join(lines)


def gradcheck_command(config_path: str, overrides: list[str], as_json: bool) -> int:
    """Print the gradient report of a config (one JSON object with ``as_json``); exit status 0."""
    report = gradcheck(load_config(config_path, overrides))
    print(json.dumps(report) if as_json else _text(report))
    return 0
