"""The worker side of a PBT member (``study.phases.pbt``): its state between sessions as Ray checkpoints at its
perturbation epochs, and the exploits it records.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from ray import tune

from diffctl.train import Trainer

from ...protocol.ranking import ranking_score, tune_metrics
from ...protocol.schema import StudySpec
from ...trialdir import TRAINER_FILE, TrialInfo
from .draws import MEMBER_FILE, SCORE, STAGING_DIR


class MemberCheckpoints:
    """The state of a PBT member between sessions: Ray checkpoints at its perturbation epochs."""

    def __init__(self, spec: StudySpec, trial_dir: Path, name: str, arm: str) -> None:
        self.spec, self.trial_id = spec, name  # a checkpoint names its member by its trial name
        self.staging = trial_dir / STAGING_DIR
        self.interval = spec.arms[arm].pbt.perturbation_interval

    def resume(self, trainer: Trainer, info: TrialInfo, previous: TrialInfo | None) -> None:
        """Continue from the checkpoint Tune hands the member (its own, or the member it exploits), if any."""
        info.exploits = list(previous.exploits or []) if previous else []
        info.restarts = previous.restarts if previous else 0
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as directory:
                state = torch.load(Path(directory) / TRAINER_FILE, weights_only=True)
                owner = json.loads((Path(directory) / MEMBER_FILE).read_text(encoding="utf-8"))
            if owner["trial_id"] == self.trial_id:
                trainer.load_state_dict(state)
            else:
                trainer.adopt_state_dict(state)
                _record_exploit(info, owner, previous.params if previous else {})
        if previous is not None and previous.epochs_done > trainer.epoch:  # epochs written after this state are trained again
            info.restarts += 1

    def save(self, trainer: Trainer) -> None:
        """Nothing between perturbation epochs: the state travels with the reports (:meth:`report`)."""

    def end(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)

    def report(self, record: dict[str, Any], trainer: Trainer | None = None) -> None:
        """Report the record with its score; at a perturbation epoch, with a checkpoint of ``trainer``."""
        metrics = {**record, **tune_metrics(self.spec, record), SCORE: ranking_score(self.spec, record)}
        if trainer is None or trainer.finished or trainer.epoch % self.interval:
            tune.report(metrics)
            return
        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir()
        torch.save(trainer.state_dict(), self.staging / TRAINER_FILE)
        owner = {"trial_id": self.trial_id, "epoch": trainer.epoch}
        (self.staging / MEMBER_FILE).write_text(json.dumps(owner) + "\n", encoding="utf-8")
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(self.staging)))


def _record_exploit(info: TrialInfo, owner: dict[str, Any], before: dict[str, Any]) -> None:
    """Add the exploit to ``trial.json``'s ``exploits`` (once: a member restarted before its next checkpoint
    takes the same state again)."""
    entry = {"epoch": owner["epoch"], "source_trial": owner["trial_id"],
             "before": {key: before.get(key) for key in info.params}, "after": dict(info.params)}
    last = info.exploits[-1] if info.exploits else {}
    if (last.get("epoch"), last.get("source_trial")) != (entry["epoch"], entry["source_trial"]):
        info.exploits.append(entry)
