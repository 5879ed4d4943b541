"""Early stopping of the Optuna arms' search trials in the study's Tuner (``asha`` in the spec; the rule is in
``study.phases.search``'s docstring): a Tune scheduler, first in first out for every other trial.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from ...protocol.configs import rung_epochs
from ...protocol.ranking import rung_score
from ...protocol.reference import DEFAULTS
from ...protocol.schema import StudySpec
from ...trialdir import OK, SEARCH, read_metrics, read_trials

TIMING_FIELDS = ("epoch_time_s", "eval_time_s")  # record fields that differ between identical runs


class SearchPruner(FIFOScheduler):
    """Early stopping of every Optuna arm's search trials (see the module docstring); other trials run first-in
    first-out."""

    _supports_buffered_results = False  # a rung decision needs each epoch's result as it comes

    def __init__(self, spec: StudySpec, study_dir: Path) -> None:
        super().__init__()
        assert spec.asha is not None
        self.spec, self.study_dir = spec, str(study_dir)
        self.rungs = [e for e in rung_epochs(spec.asha, spec.epochs) if e < spec.epochs]
        self._scores: dict[tuple[str, int, int, int], list[float]] = {}  # earlier batches' scores: fixed once known

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        config = trial.config
        epoch = result.get("epoch")
        if config.get("phase") != SEARCH or "batch" not in config or epoch not in self.rungs:
            return TrialScheduler.CONTINUE
        if result.get("status") != OK or config.get("sampling") == DEFAULTS:
            return TrialScheduler.CONTINUE  # a diverged record ends the trial anyway; no rung stops the defaults
        return TrialScheduler.STOP if self.stops(config, result) else TrialScheduler.CONTINUE

    def stops(self, config: dict[str, Any], record: dict[str, Any]) -> bool:
        """Whether a search trial with this Ray config stops at the rung of this record."""
        epoch = record["epoch"]
        reference = self.reference(config["arm"], config["replicate"], config["batch"], epoch)
        if not reference:
            return False
        cutoff = float(np.nanpercentile(reference, (1 - 1 / self.spec.asha.reduction_factor) * 100))
        return rung_score(self.spec, record) < cutoff

    def reference(self, arm: str, replicate: int, batch: int, epoch: int) -> list[float]:
        """The rung scores at ``epoch`` of the arm-replicate's search trials of batches before ``batch`` that reached
        it, each distinct record once (read from their files: those batches have ended)."""
        key = (arm, replicate, batch, epoch)
        if key not in self._scores:
            records: dict[str, dict[str, Any]] = {}
            for trial in read_trials(Path(self.study_dir) / SEARCH / arm):
                info = trial.info
                if info.replicate != replicate or info.batch is None or info.batch >= batch:
                    continue
                at = [r for r in read_metrics(trial.dir) if r.get("epoch") == epoch and r.get("status") == OK]
                if at:
                    content = {k: v for k, v in at[0].items() if k not in TIMING_FIELDS}
                    records.setdefault(json.dumps(content, sort_keys=True), at[0])
            self._scores[key] = [rung_score(self.spec, r) for r in records.values()]
        return [s for s in self._scores[key] if not math.isnan(s)]
