"""``diffctl reproduce best.yaml [--tolerance T]``: retrain an exported config and compare its objective.

The file is a diffctl config whose ``provenance.objective`` (written by ``diffctl export``) names a record
field, its value and the epoch it was read at. Training is seeded and its thread count pinned, so on CPU the
same config gives the same value: the default tolerance is 0 (exact).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

from .config import Config, load_config
from .errors import EXIT_CHECK_FAILED, EXIT_OK, InputError
from .train import STATUS_DIVERGED, Trainer


def recorded_objective(config: Config, path: str | Path) -> tuple[str, float, int]:
    """(metric, value, epoch) from ``provenance.objective``; a file without one raises :class:`InputError`."""
    objective: Any = (config.provenance or {}).get("objective")
    if not isinstance(objective, dict):
        raise InputError(f"{path}: provenance.objective: missing (not a file written by diffctl export)")
    metric, value, epoch = objective.get("metric"), objective.get("value"), objective.get("epoch")
    if not isinstance(metric, str):
        raise InputError(f"{path}: provenance.objective.metric: expected a record field name")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{path}: provenance.objective.value: expected a number (got {value!r})")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or not 1 <= epoch <= config.optim.epochs:
        raise InputError(f"{path}: provenance.objective.epoch: expected 1..optim.epochs (got {epoch!r})")
    return metric, float(value), epoch


def record_at(config: Config, epoch: int) -> dict:
    """Train ``config`` from scratch up to ``epoch`` and return that epoch's record (or the diverged one)."""
    trainer = Trainer(config)
    while True:
        record = trainer.run_epoch()
        if record["epoch"] >= epoch or record["status"] == STATUS_DIVERGED or trainer.finished:
            return record


def _print_other_objectives(config: Config, record: dict, checked: str) -> None:
    """Show the study's other objectives beside their recorded values (information; the exit code ignores them)."""
    others = (config.provenance or {}).get("objectives")
    for name, recorded in (others.items() if isinstance(others, dict) else ()):
        if name != checked:
            print(f"reproduce: also {name}: recorded {recorded!r}, reproduced {record.get(name)!r}")


def reproduce_command(path: str, tolerance: float) -> int:
    """Retrain the file's config; exit 0 when the objective is within ``tolerance`` of the recorded value."""
    if not math.isfinite(tolerance) or tolerance < 0:
        raise InputError(f"--tolerance {tolerance}: must be a finite number >= 0")
    config = load_config(path)
    metric, recorded, epoch = recorded_objective(config, path)
    print(f"reproduce: retraining {path} for {epoch} epoch(s), {config.optim.threads} thread(s)", flush=True)
    record = record_at(config, epoch)
    if record["status"] == STATUS_DIVERGED:
        print(f"reproduce: FAILED: the run diverged ({record['reason']}); recorded {metric} = {recorded!r}",
              file=sys.stderr)
        return EXIT_CHECK_FAILED
    value = record.get(metric)
    if value is None:
        raise InputError(f"{path}: provenance.objective.metric: {metric!r} is not a field of the training record")
    diff = abs(value - recorded)
    line = (f"{metric} at epoch {epoch}: recorded {recorded!r}, reproduced {value!r} "
            f"(|difference| {diff:.3g}, tolerance {tolerance:g})")
    _print_other_objectives(config, record, metric)
    if diff <= tolerance:  # NaN never passes
        print(f"reproduce: OK: {line}")
        return EXIT_OK
    print(f"reproduce: MISMATCH: {line}", file=sys.stderr)
    return EXIT_CHECK_FAILED
