"""Training-step time of each arm relative to the fixed arm, measured side by side in one process.

Every arm gets its own :class:`~diffctl.train.Trainer`; the timed unit is ``Trainer.train_step`` (forward, the
arm's control, loss, backward, clip, optimiser step, the arm's bookkeeping) — the very method the epoch loop
calls. Steps of the arms are interleaved round by round (the order rotating each round) so that a slow spell of
the machine hits every arm alike; the median over many steps discards the spells that remain. One thread.

A lookahead controller with ``lookahead_every: k`` has two kinds of step (one lookahead update, k - 1 plain
steps), so a median step says nothing about its epoch: :func:`lookahead_epoch_ratios` times blocks of 8
consecutive steps of real epochs instead, for k = 1, 2, 4, 8, interleaved the same way.

Example::

    result = arm_step_times(["fixed", "dwa", ("lookahead", load_config("configs/x.yaml"))], steps=200)
    result["dwa"]["ratio"]  # median step time of dwa / median step time of fixed
    lookahead_epoch_ratios(everies=(1, 4))["lookahead every 4"]["ratio"]  # epoch time / the fixed arm's
"""

from __future__ import annotations

import itertools
import math
import statistics
import time
from typing import Callable, Iterator, Sequence, Union

import torch

from diffctl.config import Config, config_from_dict, load_config
from diffctl.train import Trainer, pin_threads

BASELINE = "fixed"
DEFAULT_ARMS = ("fixed", "scheduled", "uncertainty", "dwa", "rlw", "statenet")
LOOKAHEAD_CONFIG = "configs/controller_lookahead.yaml"
LOOKAHEAD_EVERIES = (1, 2, 4, 8)
BLOCK = 8  # steps per timed unit of lookahead_epoch_ratios: a multiple of every lookahead_every measured

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


def _trainers(kinds_or_configs: Sequence[ArmSpec]) -> dict[str, Trainer]:
    """One trainer per labelled entry, the fixed arm first when it is not listed; all on one thread."""
    labelled = [_labelled(spec) for spec in kinds_or_configs]
    labels = [label for label, _ in labelled]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ValueError(f"kinds_or_configs: label {duplicates[0]!r} appears twice; pass (label, config) pairs")
    if BASELINE not in labels:
        labelled.insert(0, _labelled(BASELINE))
    trainers = {label: Trainer(config) for label, config in labelled}
    pin_threads(1)  # every Trainer pins its config's count; the comparison runs on one thread whatever they say
    for trainer in trainers.values():
        trainer.model.train()
    return trainers


def _interleaved(units: dict[str, Callable[[], None]], rounds: int, warmup: int) -> dict[str, dict]:
    """Time each unit once per round (the order rotating each round, the first ``warmup`` rounds not kept).

    Returns ``{label: {"median_ms", "p25_ms", "p75_ms", "ratio", "steps"}}``, the ratio to the fixed arm's median.
    """
    if rounds < 1 or warmup < 0:
        raise ValueError(f"timed rounds must be >= 1 and warmup >= 0 (got {rounds} and {warmup})")
    times: dict[str, list[float]] = {label: [] for label in units}
    order = list(units)
    for round_ in range(warmup + rounds):
        for label in order[round_ % len(order) :] + order[: round_ % len(order)]:
            start = time.perf_counter()
            units[label]()
            if round_ >= warmup:
                times[label].append(time.perf_counter() - start)
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


def _checked_step(label: str, trainer: Trainer, x, index, step: int, steps_per_epoch: int) -> None:
    outcome = trainer.train_step(x, index, step, steps_per_epoch)
    if outcome.problem is not None:
        raise RuntimeError(f"{label}: {outcome.problem}")


def arm_step_times(kinds_or_configs: Sequence[ArmSpec], steps: int = 300, warmup: int = 10) -> dict[str, dict]:
    """Median training-step time of each arm and its ratio to the fixed arm (added when not listed).

    Returns ``{label: {"median_ms", "p25_ms", "p75_ms", "ratio", "steps"}}`` in the order given, the fixed arm
    first when it was added. Two entries with the same label are an error: give one a label of its own.
    """
    trainers = _trainers(kinds_or_configs)

    def unit(label: str, trainer: Trainer) -> Callable[[], None]:
        trainer.arm.start_epoch(trainer.epoch, trainer.history, trainer.optimizer)
        batches = _full_batches(trainer)
        steps_per_epoch = len(trainer.train_part) // trainer.config.data.batch_size
        counter = itertools.count()

        def one_step() -> None:
            x, index = next(batches)
            _checked_step(label, trainer, x, index, next(counter) % steps_per_epoch, steps_per_epoch)

        return one_step

    return _interleaved({label: unit(label, t) for label, t in trainers.items()}, steps, warmup)


def _epoch_steps(trainer: Trainer) -> Iterator[tuple[torch.Tensor, torch.Tensor, int, int]]:
    """Endless ``(x, index, step, steps_per_epoch)`` of the trainer's real epochs (short last batch included),
    starting each epoch as ``Trainer.train_epoch`` does and advancing ``trainer.epoch`` (no evaluation)."""
    size = trainer.config.data.batch_size
    steps_per_epoch = math.ceil(len(trainer.train_part) / size)
    while True:
        trainer.arm.start_epoch(trainer.epoch, trainer.history, trainer.optimizer)
        for step, (x, index) in enumerate(trainer.data.batches(trainer.train_part, size, trainer.generator)):
            yield x, index, step, steps_per_epoch
        trainer.epoch += 1


def lookahead_epoch_ratios(
    config: Config | None = None, everies: Sequence[int] = LOOKAHEAD_EVERIES, blocks: int = 40, warmup: int = 2
) -> dict[str, dict]:
    """Training time of the lookahead controller (``config``, default configs/controller_lookahead.yaml) with
    ``lookahead_every`` = each of ``everies``, relative to the fixed arm, as in an epoch.

    The timed unit is a block of ``BLOCK`` consecutive steps of real epochs (a multiple of every k: each block
    holds exactly BLOCK / k lookahead updates, as an epoch holds 1 / k of its steps), interleaved across the
    arms like :func:`arm_step_times`; ``median_ms`` is per block and ``steps`` counts the timed blocks. Epoch
    time is proportional to block time.
    """
    config = config or load_config(LOOKAHEAD_CONFIG)
    bad = [k for k in everies if BLOCK % k]
    if bad:
        raise ValueError(f"everies: {bad[0]} does not divide the block of {BLOCK} steps")
    data = config.to_dict()
    specs = []
    for k in everies:
        data["arm"]["lookahead_every"] = k
        specs.append((f"lookahead every {k}", config_from_dict(data)))
    trainers = _trainers(specs)

    def unit(label: str, trainer: Trainer) -> Callable[[], None]:
        steps = _epoch_steps(trainer)

        def block() -> None:
            for _ in range(BLOCK):
                _checked_step(label, trainer, *next(steps))

        return block

    return _interleaved({label: unit(label, t) for label, t in trainers.items()}, blocks, warmup)


def print_arm_steps(result: dict[str, dict]) -> None:
    """The table ``make bench`` prints: one line per arm."""
    print("training step, 1 thread, batch 256 (median of interleaved steps; ratio to the fixed arm):")
    for label, row in result.items():
        print(
            f"  {label:<24} {row['median_ms']:7.2f} ms  (p25 {row['p25_ms']:.2f}, p75 {row['p75_ms']:.2f})"
            f"   ratio {row['ratio']:.2f}x   n={row['steps']}"
        )


def print_lookahead_epochs(result: dict[str, dict]) -> None:
    """The rows ``make bench`` prints for the lookahead cadence: one line per ``lookahead_every``."""
    print("training epoch, lookahead controller with lookahead_every = k, 1 thread, batch 256 (median of")
    print(f"interleaved blocks of {BLOCK} steps of real epochs; ratio to the fixed arm's epoch):")
    for label, row in result.items():
        print(
            f"  {label:<24} {row['median_ms']:7.1f} ms / {BLOCK} steps  (p25 {row['p25_ms']:.1f}, p75 "
            f"{row['p75_ms']:.1f})   ratio {row['ratio']:.2f}x   n={row['steps']}"
        )


def main() -> None:
    print_arm_steps(arm_step_times(DEFAULT_ARMS))
    print_lookahead_epochs(lookahead_epoch_ratios())


if __name__ == "__main__":
    main()
