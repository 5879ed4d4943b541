"""Training-step time of each arm relative to the fixed arm, measured side by side in one process.

Every arm gets its own :class:`~diffctl.train.Trainer`; the timed unit is ``Trainer.train_step`` (forward, the
arm's control, loss, backward, clip, optimiser step, the arm's bookkeeping) — the very method the epoch loop
calls. Steps of the arms are interleaved round by round (the order rotating each round) so that a slow spell of
the machine hits every arm alike; the median over many steps discards the spells that remain. One thread.

Example::

    result = arm_step_times(["fixed", "dwa", ("lookahead", load_config("configs/x.yaml"))], steps=200)
    result["dwa"]["ratio"]  # median step time of dwa / median step time of fixed
"""

from __future__ import annotations

import statistics
import time
from typing import Iterator, Sequence, Union

import torch

from diffctl.config import Config, load_config
from diffctl.train import Trainer, pin_threads

BASELINE = "fixed"
DEFAULT_ARMS = ("fixed", "scheduled", "uncertainty", "dwa", "rlw", "statenet")

ArmSpec = Union[str, Config, tuple[str, Union[str, Config]]]


def _labelled(spec: ArmSpec) -> tuple[str, Config]:
    """(label, config) of one entry: an arm kind (default options), a config, or a (label, kind-or-config) pair."""
    label, target = spec if isinstance(spec, tuple) else (None, spec)
    if isinstance(target, str):
        return label or target, load_config(None, [f"arm.kind={target}"])
    if isinstance(target, Config):
        return label or target.arm.kind, target
    raise ValueError(f"kinds_or_configs: expected an arm kind, a Config or a (label, kind or Config), got {spec!r}")


def _full_batches(trainer: Trainer) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless full-size training batches (the short last batch of each pass would blur the median)."""
    size = trainer.config.data.batch_size
    while True:
        for x, index in trainer.data.batches(trainer.split.train, size, trainer.generator):
            if len(x) == size:
                yield x, index


def arm_step_times(kinds_or_configs: Sequence[ArmSpec], steps: int = 300, warmup: int = 10) -> dict[str, dict]:
    """Median training-step time of each arm and its ratio to the fixed arm (added when not listed).

    Returns ``{label: {"median_ms", "p25_ms", "p75_ms", "ratio", "steps"}}`` in the order given, the fixed arm
    first when it was added. Two entries with the same label are an error: give one a label of its own.
    """
    if steps < 1 or warmup < 0:
        raise ValueError(f"steps must be >= 1 and warmup >= 0 (got steps={steps}, warmup={warmup})")
    labelled = [_labelled(spec) for spec in kinds_or_configs]
    labels = [label for label, _ in labelled]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ValueError(f"kinds_or_configs: label {duplicates[0]!r} appears twice; pass (label, config) pairs")
    if BASELINE not in labels:
        labelled.insert(0, _labelled(BASELINE))
    trainers = {label: Trainer(config) for label, config in labelled}
    pin_threads(1)  # every Trainer pins its config's count; the comparison runs on one thread whatever they say
    batches = {}
    for label, trainer in trainers.items():
        trainer.model.train()
        trainer.arm.start_epoch(trainer.epoch, trainer.history, trainer.optimizer)
        batches[label] = _full_batches(trainer)
    steps_per_epoch = {label: len(t.split.train) // t.config.data.batch_size for label, t in trainers.items()}
    times: dict[str, list[float]] = {label: [] for label in trainers}
    order = list(trainers)
    for round_ in range(warmup + steps):
        for label in order[round_ % len(order) :] + order[: round_ % len(order)]:
            trainer = trainers[label]
            x, index = next(batches[label])
            start = time.perf_counter()
            outcome = trainer.train_step(x, index, round_ % steps_per_epoch[label], steps_per_epoch[label])
            elapsed = time.perf_counter() - start
            if outcome.problem is not None:
                raise RuntimeError(f"{label}: {outcome.problem}")
            if round_ >= warmup:
                times[label].append(elapsed)
    base = statistics.median(times[BASELINE])
    result = {}
    for label, samples in times.items():
        q1, _, q3 = statistics.quantiles(samples, n=4) if len(samples) > 1 else [samples[0]] * 3
        median = statistics.median(samples)
        result[label] = {
            "median_ms": 1e3 * median,
            "p25_ms": 1e3 * q1,
            "p75_ms": 1e3 * q3,
            "ratio": median / base,
            "steps": len(samples),
        }
    return result


def print_arm_steps(result: dict[str, dict]) -> None:
    """The table ``make bench`` prints: one line per arm."""
    print("training step, 1 thread, batch 256 (median of interleaved steps; ratio to the fixed arm):")
    for label, row in result.items():
        print(
            f"  {label:<24} {row['median_ms']:7.2f} ms  (p25 {row['p25_ms']:.2f}, p75 {row['p75_ms']:.2f})"
            f"   ratio {row['ratio']:.2f}x   n={row['steps']}"
        )


def main() -> None:
    print_arm_steps(arm_step_times(DEFAULT_ARMS))


if __name__ == "__main__":
    main()
