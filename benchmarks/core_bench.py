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

from diffctl.config import load_config
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
