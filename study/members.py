"""The worker side of population based training (``study.pbt``): how a member keeps, hands on and takes over
a training state.

A member reports a Ray checkpoint at every perturbation epoch (a multiple of ``pbt.perturbation_interval``
before the last epoch): ``trainer.pt`` (``Trainer.state_dict()``, its records included) and ``member.json``
({"trial_id", "epoch"}: whose state it is), staged in the trial directory (``.checkpoint/``) and copied by Tune
into the PBT experiment (``ray_pbt/<arm>/<trial_id>/checkpoint_*``). A member that starts with a checkpoint
(``tune.get_checkpoint()``) continues from it:

- its own (paused until the population caught up; or restarted after its worker or the driver died: the epochs
  after that checkpoint are trained again, deterministically, and the session counts as a restart);
- another member's (an exploit): it takes that state with its own, perturbed config (the weights, rho and
  learning rate of its config, ``Trainer.adopt_state_dict``); its ``metrics.jsonl`` becomes the source's
  records up to that epoch, and ``trial.json`` gains ``{"epoch", "source_trial", "before", "after"}`` in
  ``exploits`` (``before``/``after``: its mutated keys' values before and after).

Every report carries ``pbt_score`` (``study.pbt.SCORE``), the record's rank in the population, larger is better:
its selection value when it meets the constraints, else below every feasible record
(``study.objectives.ranking_score``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from ray import tune

from diffctl.train import Trainer

from .objectives import ranking_score, tune_metrics
from .trialdir import STATE_FILE, TrialInfo

if TYPE_CHECKING:
    from .spec import StudySpec

STAGING_DIR = ".checkpoint"  # where a member writes a checkpoint before Tune copies it into the experiment
MEMBER_FILE = "member.json"
SCORE = "pbt_score"  # what a member reports for the ranking (ranking_score), larger is better


class MemberCheckpoints:
    """The state of a PBT member between sessions: Ray checkpoints at its perturbation epochs."""

    def __init__(self, spec: StudySpec, trial_dir: Path, trial_id: str, arm: str) -> None:
        self.spec, self.trial_id = spec, trial_id
        self.staging = trial_dir / STAGING_DIR
        self.interval = spec.arms[arm].pbt.perturbation_interval

    def resume(self, trainer: Trainer, info: TrialInfo, previous: dict[str, Any] | None) -> None:
        """Continue from the checkpoint Tune hands the member (its own, or the member it exploits), if any."""
        previous = previous or {}
        info.exploits = list(previous.get("exploits", []))
        info.restarts = previous.get("restarts", 0)
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as directory:
                state = torch.load(Path(directory) / STATE_FILE, weights_only=True)
                owner = json.loads((Path(directory) / MEMBER_FILE).read_text(encoding="utf-8"))
            if owner["trial_id"] == self.trial_id:
                trainer.load_state_dict(state)
            else:
                trainer.adopt_state_dict(state)
                _record_exploit(info, owner, previous.get("params", {}))
        if previous.get("epochs_done", 0) > trainer.epoch:  # epochs written after this state are trained again
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
        torch.save(trainer.state_dict(), self.staging / STATE_FILE)
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
