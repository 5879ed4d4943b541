"""Training-epoch and evaluation time of the fixed arm on one thread, against the time of the same matrix
products alone (the FLOP-bound time of an epoch on this CPU, measured in the same run).

The ratio measured / matmul-only says how much of an epoch is overhead (operator launches, elementwise work,
the optimiser) rather than arithmetic.
"""

from __future__ import annotations

import math
import statistics
import time

import torch

from diffctl.config import Config, EvalConfig, load_config
from diffctl.data import N_OPERATIONS
from diffctl.train import Trainer


def _linear_shapes(model) -> tuple[list[tuple[int, int]], list[tuple[int, int]], list[tuple[int, int]]]:
    """(in, out) of every linear layer of: one encoder, decoder A, decoder B."""
    enc = [(m.in_features, m.out_features) for m in model.vae_a.encoder.modules() if isinstance(m, torch.nn.Linear)]
    dec_a = [(m.in_features, m.out_features) for m in model.vae_a.decoder.modules() if isinstance(m, torch.nn.Linear)]
    dec_b = [(m.in_features, m.out_features) for m in model.vae_b.decoder.modules() if isinstance(m, torch.nn.Linear)]
    return enc, dec_a, dec_b


def _time_matmuls(shapes: list[tuple[int, int, int]], repeats: int) -> float:
    """Median time of one pass over (rows, in, out) products, each run as the plain matmul it needs."""
    mats = [(torch.randn(r, i), torch.randn(i, o)) for r, i, o in shapes]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for a, b in mats:
            torch.mm(a, b)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def train_matmul_shapes(model, batch: int) -> list[tuple[int, int, int]]:
    """Forward and backward products of one training step: y = xW, dx = dy W^T, dW = x^T dy per layer."""
    enc, dec_a, dec_b = _linear_shapes(model)
    shapes = []
    for i, o in enc + enc + dec_a + dec_b:  # two encoders
        shapes += [(batch, i, o), (batch, o, i), (i, batch, o)]
    return shapes


def eval_matmul_shapes(model, val: int, prior: int) -> list[tuple[int, int, int]]:
    """Forward products of one evaluation: encoders and decoders on all operations, decoders on the val
    sampled codes and on the prior samples."""
    enc, dec_a, dec_b = _linear_shapes(model)
    shapes = [(N_OPERATIONS, i, o) for i, o in enc + enc + dec_a + dec_b]
    shapes += [(val, i, o) for i, o in dec_a + dec_b]
    shapes += [(prior, i, o) for i, o in dec_a + dec_b]
    return shapes


def core_benchmark(epochs: int = 5) -> dict[str, float]:
    """Median seconds per training epoch and per evaluation of the fixed arm, and their matmul-only bounds."""
    cfg = load_config("configs/fixed.yaml", [f"optim.epochs={epochs}", "optim.threads=1"])
    trainer = Trainer(cfg)
    train_times, eval_times = [], []
    for _ in range(epochs):
        record = trainer.run_epoch()
        train_times.append(record["epoch_time_s"])
        eval_times.append(record["eval_time_s"])
    steps = math.ceil(len(trainer.split.train) / cfg.data.batch_size)
    step_shapes = train_matmul_shapes(trainer.model, cfg.data.batch_size)
    train_bound = _time_matmuls(step_shapes, 50) * steps
    eval_bound = _time_matmuls(eval_matmul_shapes(trainer.model, len(trainer.split.val), cfg.eval.prior_samples), 5)
    result = {
        "train_epoch_s": statistics.median(train_times),
        "eval_s": statistics.median(eval_times),
        "train_matmul_bound_s": train_bound,
        "eval_matmul_bound_s": eval_bound,
    }
    result["train_ratio"] = result["train_epoch_s"] / train_bound
    result["eval_ratio"] = result["eval_s"] / eval_bound
    return result


def print_core(result: dict[str, float]) -> None:
    print("fixed arm, 1 thread, batch 256 (median of the epochs):")
    print(
        f"  training epoch  {result['train_epoch_s']:.3f} s   matmuls alone {result['train_matmul_bound_s']:.3f} s"
        f"   ratio {result['train_ratio']:.2f}x   (goal <= 0.5 s)"
    )
    print(
        f"  evaluation      {result['eval_s']:.3f} s   matmuls alone {result['eval_matmul_bound_s']:.3f} s"
        f"   ratio {result['eval_ratio']:.2f}x   (goal <= 0.2 s)"
    )


# --- the evaluation schedule: what a 40-epoch trial costs with the full set every epoch, and thinned out -----------
TRIAL_EPOCHS = 40
STUDY_FULL_EVERY = 5  # the thinning a study spec sets (eval.full_every); the last epoch is always full
QUICK_EVAL = ["eval.prior_samples=20000", "eval.triplets=20000"]  # study/specs/quick.yaml's base
SCHEDULE_TRIALS = {
    "fixed, quick.yaml eval": ("configs/fixed.yaml", QUICK_EVAL),
    "fixed, default eval": ("configs/fixed.yaml", []),  # 50,000 prior samples
    "controller lookahead": ("configs/controller_lookahead.yaml", []),
}


def epoch_costs(config: Config, epochs: int = 3) -> dict[str, float]:
    """Median seconds of a training epoch, a full evaluation and a cheap one (both after each epoch, their order
    alternating, so that a slow spell of the machine hits both)."""
    trainer = Trainer(config)
    times: dict[str, list[float]] = {"train_s": [], "full_s": [], "cheap_s": []}
    for epoch in range(epochs):
        start = time.perf_counter()
        trainer.train_epoch()
        times["train_s"].append(time.perf_counter() - start)
        trainer.epoch += 1  # as run_epoch does after its evaluation
        for full in (True, False) if epoch % 2 == 0 else (False, True):
            start = time.perf_counter()
            trainer.evaluate(full)
            times["full_s" if full else "cheap_s"].append(time.perf_counter() - start)
    return {key: statistics.median(values) for key, values in times.items()}


def trial_cost(costs: dict[str, float], eval_config: EvalConfig, epochs: int = TRIAL_EPOCHS) -> dict[str, float]:
    """A trial of ``epochs`` epochs composed from per-epoch costs under ``eval_config``'s schedule: its seconds on
    one core, trial-epochs per core-second and the evaluation's share of its time."""
    full = sum(eval_config.full_at(epoch, epochs) for epoch in range(1, epochs + 1))
    evaluation = full * costs["full_s"] + (epochs - full) * costs["cheap_s"]
    total = epochs * costs["train_s"] + evaluation
    return {"full_epochs": full, "seconds": total, "epochs_per_core_s": epochs / total, "eval_share": evaluation / total}


def eval_schedule_benchmark(full_every: int = STUDY_FULL_EVERY) -> dict[str, dict]:
    """Per trial shape: its per-epoch costs and a 40-epoch trial before (full set every epoch) and after."""
    result = {}
    for label, (path, overrides) in SCHEDULE_TRIALS.items():
        config = load_config(path, [*overrides, "optim.threads=1", f"optim.epochs={TRIAL_EPOCHS}"])
        costs = epoch_costs(config)
        result[label] = {
            **costs,
            "before": trial_cost(costs, config.eval),
            "after": trial_cost(costs, config.eval.model_copy(update={"full_every": full_every})),
            "full_every": full_every,
        }
    return result


def print_eval_schedule(result: dict[str, dict]) -> None:
    print(f"evaluation schedule, 1 thread: a {TRIAL_EPOCHS}-epoch trial composed from measured per-epoch costs")
    print("(median of 3 epochs; full evaluation = the full set, cheap = the val split's loss, exact match, KL):")
    for label, row in result.items():
        before, after = row["before"], row["after"]
        print(
            f"  {label:<24} train {row['train_s']:.3f} s/epoch, eval full {row['full_s']:.3f} s, cheap"
            f" {row['cheap_s']:.3f} s ({row['cheap_s'] / row['full_s']:.0%} of full)"
        )
        print(
            f"  {'':<24} full every epoch: {before['epochs_per_core_s']:.3f} trial-epochs/core-s, eval"
            f" {before['eval_share']:.1%} of the trial;  full_every {row['full_every']} ({after['full_epochs']} full):"
            f" {after['epochs_per_core_s']:.3f} trial-epochs/core-s ({after['epochs_per_core_s'] / before['epochs_per_core_s']:.2f}x),"
            f" eval {after['eval_share']:.1%}   (goal <= 15%)"
        )
