"""The Ray Tune function trainable: one trial is one diffctl training run, epoch by epoch.

Every epoch it saves ``Trainer.state_dict()`` to ``trainer.pt`` and rewrites ``metrics.jsonl`` and
``trial.json``, all atomically, in the trial directory (``config.yaml`` once), then calls
``tune.report(record + told objectives)``. A trial Ray restarts (after a crash or ``study resume``) continues
from ``trainer.pt``, so its records are the ones an uninterrupted run would have written, and reports its last
saved epoch again before it trains on (early stopping judges that epoch as it would have in an uninterrupted
run); one whose ``trial.json`` is already final, or whose ``trainer.pt`` holds its last epoch (a kill just before
``trial.json`` said so), reports its last record again and trains nothing. ``trainer.pt`` is removed when the
trial ends. The torch thread count is the spec's ``cpus_per_trial`` (the CPUs Ray reserves for the
trial), pinned by the Trainer.

Why not Ray checkpoints (``tune.report(checkpoint=...)`` / ``tune.get_checkpoint()``): keeping one per trial
(``CheckpointConfig(num_to_keep=1)``) deletes the previous checkpoint before the next experiment snapshot; a
driver killed in between leaves a snapshot naming a deleted checkpoint, and ``Tuner.restore`` then fails the
trial ("Could not recover from checkpoint as it does not exist on storage anymore", reproduced by the kill test
of tests/test_study.py). Keeping them all costs ~2 MB per epoch and trial. The trial directory already holds
the newest state, never older than the records beside it. The members of a population based training are the
exception (``study.phases.pbt.members.MemberCheckpoints``): a member continues from another member's state, which only
Ray can hand it.

A diverged record ends the trial normally (status ``diverged``; ``study.phases.search`` tells Optuna FAIL);
an exception marks the trial ``error`` with a one-line reason and is re-raised so that Ray records it while
the study goes on.
"""

from __future__ import annotations

import fcntl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from ray import tune

from diffctl.config import config_from_dict
from diffctl.errors import one_line
from diffctl.files import atomic_torch_save
from diffctl.train import Trainer

from .cluster import this_node
from .phases.base import Phase, TrialRequest
from .phases.registry import phases  # (and with it the search methods, which a worker's search trials use)
from .protocol.ranking import tune_metrics
from .protocol.schema import StudySpec
from .trialdir import (
    DIVERGED,
    ERROR,
    LOCK_FILE,
    OK,
    RUNNING,
    STOPPED,
    TRAINER_FILE,
    Session,
    TrialInfo,
    read_info,
    read_metrics,
    trial_name,
    write_config,
    write_info,
    write_metrics,
)


@dataclass(frozen=True)
class TrialJob:
    """What every trial of a study shares; handed to the trainable with ``tune.with_parameters``. Each trial's Ray
    config is its phase's request (``study.phases.base.TrialRequest``); ``phases`` are the study's phases
    (``study.phases.registry``), which say how a request trains."""

    spec: StudySpec
    study_dir: str
    code: dict[str, Any] | None = None  # the code version of the driver (diffctl.provenance): every trial records it
    phases: tuple[Phase, ...] = ()  # the study's phases (default: those registered, study.phases.registry)

    def __post_init__(self) -> None:
        if not self.phases:
            object.__setattr__(self, "phases", tuple(phases()))

    def phase(self, name: str) -> Phase:
        return next(p for p in self.phases if p.name == name)

    def trial_dir(self, config: dict[str, Any]) -> Path:
        return Path(self.study_dir) / config["phase"] / config["arm"] / trial_name(config)

    def trial_info(self, ray_trial_id: str, request: TrialRequest) -> TrialInfo:
        """The ``trial.json`` a trial starts with: the request's keys its phase records."""
        info = TrialInfo(arm=request.arm, phase=request.phase, trial_id=request.name, params=dict(request.params),
                         seed=-1 if request.seed is None else request.seed, status=RUNNING,
                         ray_trial_id=ray_trial_id, replicate=request.replicate, code=self.code)
        recorded = {**request.model_dump(), "distilled": request.arm_config}
        for key in sorted(self.phase(request.phase).record_keys):
            setattr(info, key, recorded[key])
        return info

    def trial_config(self, request: TrialRequest) -> dict[str, Any]:
        """The diffctl config (as a dict) a trial trains with (its phase's rule). The runs whose numbers a reader
        quotes (the phases with ``test_split``: the front, confirmation, distilled and ablation runs) also evaluate
        the held-out test split (``eval.test_split``); the runs that stand for search decisions (search, audit,
        retune) do not. The study's decisions read the val split alone."""
        phase = self.phase(request.phase)
        data = phase.trial_config(self.spec, request)
        data.setdefault("eval", {})["test_split"] = phase.test_split
        return data

    def state_store(self, trial_dir: Path, request: TrialRequest) -> Any:
        """Where the trial keeps its state between epochs and how it reports: its phase's store (a PBT member's
        Ray checkpoints), or its own ``trainer.pt``."""
        store = self.phase(request.phase).state_store(self.spec, trial_dir, request)
        return store if store is not None else TrainerFile(self.spec, trial_dir)


class TrainerFile:
    """The state of a trial between epochs in its own ``trainer.pt`` (every trial but a PBT member)."""

    def __init__(self, spec: StudySpec, trial_dir: Path) -> None:
        self.spec, self.path = spec, trial_dir / TRAINER_FILE

    def resume(self, trainer: Trainer, info: TrialInfo, previous: TrialInfo | None) -> None:
        """Continue from the last epoch saved (after a crash or a resume: the trial ran before)."""
        if previous is not None:
            info.restarts = previous.restarts + 1
        if self.path.exists():
            trainer.load_state_dict(torch.load(self.path, weights_only=True))

    def save(self, trainer: Trainer) -> None:
        """Before the epoch's records are written: its state, the last epoch's too (a driver killed between that
        epoch's records and its final ``trial.json`` must not have it trained again); :meth:`end` removes it."""
        atomic_torch_save(self.path, trainer.state_dict())

    def end(self) -> None:
        """The trial's records say all: its state goes (~2 MB less per trial)."""
        self.path.unlink(missing_ok=True)

    def report(self, record: dict[str, Any], trainer: Trainer | None = None) -> None:
        tune.report({**record, **tune_metrics(self.spec, record)})


def train_trial(config: dict[str, Any], job: TrialJob) -> None:
    """Ray Tune function trainable (wrap with ``tune.with_parameters(train_trial, job=...)``)."""
    trial_id = tune.get_context().get_trial_id()
    trial_dir = job.trial_dir(config)
    trial_dir.mkdir(parents=True, exist_ok=True)
    # A worker of a killed driver finishes its epoch before it notices: a resumed trial waits for it to exit.
    with open(trial_dir / LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _run(trial_dir, trial_id, config, job)


def _run(trial_dir: Path, trial_id: str, config: dict[str, Any], job: TrialJob) -> None:
    request = TrialRequest.from_config({**config, "name": trial_name(config)})
    previous = read_info(trial_dir)
    store = job.state_store(trial_dir, request)
    if previous is not None and previous.status in (OK, DIVERGED, STOPPED):
        # It ended before the driver recorded that: report its last record again, leave its files alone.
        store.end()
        store.report(read_metrics(trial_dir)[-1])
        return
    info = job.trial_info(trial_id, request)
    earlier_wall = info.wall_time_s = previous.wall_time_s if previous else 0.0
    info.nodes = [*(previous.nodes if previous else []), Session(**this_node(), started_at=time.time())]  # this one last
    info.mixed_code = bool(previous and (previous.mixed_code or previous.code != info.code))
    start = time.perf_counter()
    try:
        trained = config_from_dict(job.trial_config(request))
        info.seed = trained.seed
        trainer = Trainer(trained)
        store.resume(trainer, info, previous)  # a trial that ran before continues where its state was saved
        write_config(trial_dir, trained)
        write_metrics(trial_dir, trainer.history)
        info.epochs_done = trainer.epoch
        write_info(trial_dir, info)
        if isinstance(store, TrainerFile) and trainer.history and not trainer.finished:
            # Its last saved epoch again first: early stopping judges it as an uninterrupted run's would have been.
            store.report(trainer.history[-1])

        def epoch_ended(record: dict[str, Any]) -> None:
            info.status = record["status"] if trainer.finished else RUNNING
            info.reason = record.get("reason")
            info.epochs_done = trainer.epoch
            info.wall_time_s = earlier_wall + time.perf_counter() - start
            write_info(trial_dir, info)
            if trainer.finished:
                store.end()
            store.report(record, trainer)

        if trainer.finished and trainer.history:  # its last epoch was saved and written, trial.json not yet final
            epoch_ended(trainer.history[-1])
        while not trainer.finished:
            record = trainer.run_epoch()
            store.save(trainer)
            write_metrics(trial_dir, trainer.history)
            epoch_ended(record)
    except Exception as exc:
        info.status, info.reason = ERROR, one_line(exc)
        info.wall_time_s = earlier_wall + time.perf_counter() - start
        write_info(trial_dir, info)
        raise
