"""Population based training (PBT) of an arm, at the compute of the other arms' searches, and its schedule.

An arm with ``search: pbt`` trains a population of ``budget`` members of its fixed-arm config for the spec's
epochs (population x epochs trial-epochs: the budget x epochs of an Optuna arm). Each member starts from its own
draw of the mutated keys (``pbt.mutations``, drawn with ``pbt.seed``). At every ``perturbation_interval`` epochs
the whole population is ranked on the spec's selection metric, feasible members first
(``study.objectives.ranking_score``; synchronously: a member waits until every member has reached that epoch), and each member of the worst ``quantile_fraction`` continues from the state of one of
the best (model, optimiser, generator and records: ``Trainer.state_dict()``) with that member's values of the
mutated keys perturbed or, with ``resample_probability``, drawn afresh from their range (clipped to it). Members
are the arm's search trials (``search/<arm>/<trial_id>/``); the worker side is :class:`MemberCheckpoints` below.

Ray Tune's ``PopulationBasedTraining`` refuses a Tuner that has a search algorithm and must see every result as
it comes, so each PBT arm runs in a Tune experiment of its own, ``ray_pbt/<arm>/``, before the study's Optuna
Tuner (``study.runner``); the members' states travel as Ray checkpoints, all kept while that Tuner runs and
removed once it has finished (:func:`remove_checkpoints`).

The best member (the selection rule on its final record, feasible first) then gives the arm's **schedule**: its
per-epoch values of rho, the weights and, where mutated, the learning rate, as a piecewise arm
(``search/<arm>/schedule-r<k>.yaml``, a whole diffctl config). The arm's confirmation runs replay that schedule on the
confirmation seeds (``study.phases.confirm``); its distilled baselines hold its constants (``final``, ``mean``;
the replay is the confirmation itself).

The worker side (:class:`MemberCheckpoints`): a member reports a Ray checkpoint at every perturbation epoch (a
multiple of ``pbt.perturbation_interval`` before the last epoch): ``trainer.pt`` (``Trainer.state_dict()``, its
records included) and ``member.json`` ({"trial_id", "epoch"}: whose state it is), staged in the trial directory
(``.checkpoint/``) and copied by Tune into the PBT experiment (``ray_pbt/<arm>/<trial_id>/checkpoint_*``). A
member that starts with a checkpoint (``tune.get_checkpoint()``) continues from it: its own (paused until the
population caught up; or restarted after its worker or the driver died: the epochs after that checkpoint are
trained again, deterministically, and the session counts as a restart), or another member's (an exploit: it
takes that state with its own, perturbed config — the weights, rho and learning rate of its config,
``Trainer.adopt_state_dict``; its ``metrics.jsonl`` becomes the source's records up to that epoch, and
``trial.json`` gains ``{"epoch", "source_trial", "before", "after"}`` in ``exploits``). Every report carries
``pbt_score`` (:data:`SCORE`): the record's rank in the population, larger is better
(``study.spec.ranking.ranking_score``).

Replicates (``search_replicates``): each replicate's population trains in a Tune experiment of its own
(``ray_pbt/<arm>``, then ``ray_pbt/<arm>.r1``, ...), its members named ``r<k>-m<member>``, its draws seeded apart.

Reproducibility: the initial draws depend on ``pbt.seed`` (and the replicate) only; each perturbation draws from
a generator seeded with ``pbt.seed``, the member's index and the epoch, so a resumed study perturbs as an
uninterrupted one would.
"""

from __future__ import annotations

import json
import math
import random
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import PopulationBasedTraining, TrialScheduler

from diffctl.arms.piecewise import CONTROL_KEYS, schedule_from_records
from diffctl.config import config_from_dict, dump_config, load_config
from diffctl.files import atomic_write_text
from diffctl.train import Trainer

from ..spec.ranking import confirmation_sources, ranking_score, tune_metrics
from ..spec.schema import MutationFloat, MutationInt, StudySpec
from ..spec.plan import member_name, replicate_of
from ..trialdir import OK, SEARCH, TRAINER_FILE, TrialInfo, TrialSummary, read_metrics, read_trials, schedule_file

EXPERIMENTS = "ray_pbt"  # <study>/ray_pbt/<arm>/: the Tune experiment of each PBT arm
CHECKPOINT_GLOB = "checkpoint_*"  # Tune's name for a reported checkpoint in a trial's experiment directory
STAGING_DIR = ".checkpoint"  # where a member writes a checkpoint before Tune copies it into the experiment
MEMBER_FILE = "member.json"
SCORE = "pbt_score"  # what a member reports for the ranking (ranking_score), larger is better


def draw(rng: Any, mutation: MutationFloat | MutationInt) -> float | int:
    """One value of a mutated key from its range (log-uniform with ``log``), with ``rng`` (a ``random.Random``
    or the ``random`` module)."""
    low, high = mutation.low, mutation.high
    if mutation.log:
        value = math.exp(rng.uniform(math.log(low), math.log(high)))
    else:
        value = rng.uniform(low, high)
    return clip(mutation, value)


def clip(mutation: MutationFloat | MutationInt, value: float) -> float | int:
    """``value`` within the mutation's range (rounded for an int key)."""
    value = min(max(value, mutation.low), mutation.high)
    return int(round(value)) if isinstance(mutation, MutationInt) else float(value)


def replicate_seed(seed: int, replicate: int) -> int | str:
    """The seed of one replicate's draws: ``pbt.seed`` itself for the first, one derived apart for the others."""
    return seed if replicate == 0 else f"{seed}/replicate {replicate}"


def experiment_name(arm: str, replicate: int) -> str:
    """The Tune experiment of one replicate of a PBT arm: ``ray_pbt/<arm>``, then ``ray_pbt/<arm>.r1``, ..."""
    return arm if replicate == 0 else f"{arm}.r{replicate}"


def initial_params(spec: StudySpec, arm: str, replicate: int = 0) -> list[dict[str, Any]]:
    """Every member's initial values of the mutated keys, in member order (the same for the same spec)."""
    pbt = spec.arms[arm].pbt
    rng = random.Random(replicate_seed(pbt.seed, replicate))
    return [{key: draw(rng, mutation) for key, mutation in pbt.mutations.items()} for _ in range(spec.arms[arm].budget)]


class Resample:
    """A mutated key's range as Tune's PBT resamples it: a picklable callable drawing with ``random`` (which
    :meth:`MemberPBT._checkpoint_or_exploit` seeds for each perturbation)."""

    def __init__(self, mutation: MutationFloat | MutationInt) -> None:
        self.mutation = mutation

    def __call__(self) -> float | int:
        return draw(random, self.mutation)


class Clip:
    """PBT's ``custom_explore_fn``: a perturbed value (times a perturbation factor) back within its range."""

    def __init__(self, mutations: dict[str, MutationFloat | MutationInt]) -> None:
        self.mutations = mutations

    def __call__(self, config: dict[str, Any]) -> dict[str, Any]:
        config["params"] = {key: clip(self.mutations[key], value) if key in self.mutations else value
                            for key, value in config["params"].items()}
        return config


class MemberPBT(PopulationBasedTraining):
    """Tune's synchronous PBT over one arm's population, ranked on :data:`SCORE` at the multiples of the
    perturbation interval before the last epoch (time attribute: the record's ``epoch``).

    Tune keeps no scheduler state across ``Tuner.restore`` (it restores the scheduler as it was created): a
    restored member takes its rank, score and epoch from the checkpoint it continues from, and the next
    synchronisation is the first multiple of the interval above the least advanced member's epoch. A member that
    ends early (diverged, error) releases the members waiting for it."""

    _supports_buffered_results = False  # a perturbation needs each epoch's result as it comes

    def __init__(self, spec: StudySpec, arm: str, replicate: int = 0) -> None:
        pbt = spec.arms[arm].pbt
        super().__init__(
            time_attr="epoch", metric=SCORE, mode="max", perturbation_interval=pbt.perturbation_interval,
            hyperparam_mutations={"params": {key: Resample(m) for key, m in pbt.mutations.items()}},
            quantile_fraction=pbt.quantile_fraction, resample_probability=pbt.resample_probability,
            perturbation_factors=tuple(pbt.perturbation_factors), custom_explore_fn=Clip(pbt.mutations),
            log_config=False,  # trial.json records every exploit
            synch=True,
        )
        self._epochs, self._seed = spec.epochs, replicate_seed(pbt.seed, replicate)
        self._initial = initial_params(spec, arm, replicate)

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        trial.config.setdefault("params", dict(self._initial[trial.config["member"]]))
        trial.config.setdefault("name", member_name(trial.config.get("replicate", 0), trial.config["member"]))
        super().on_trial_add(tune_controller, trial)
        saved = trial.run_metadata.checkpoint_manager.latest_checkpoint_result
        if saved is not None and saved.checkpoint is not None and SCORE in (saved.metrics or {}):
            state = self._trial_state[trial]
            state.last_score, state.last_result = saved.metrics[SCORE], saved.metrics
            state.last_train_time = state.last_perturbation_time = saved.metrics["epoch"]
        times = [s.last_train_time for t, s in self._trial_state.items() if not t.is_finished()]
        interval = self._perturbation_interval
        self._next_perturbation_sync = interval * (min(times, default=0) // interval + 1)

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        epoch = result.get("epoch", 0)
        if result.get("status") != OK or epoch >= self._epochs or epoch % self._perturbation_interval:
            return TrialScheduler.CONTINUE
        due = self._next_perturbation_sync
        decision = super().on_trial_result(tune_controller, trial, result)
        if self._next_perturbation_sync != due:  # the population was ranked at this epoch: the next one
            self._next_perturbation_sync = epoch + self._perturbation_interval
        return decision

    def choose_trial_to_run(self, tune_controller: Any) -> Trial | None:
        trial = super().choose_trial_to_run(tune_controller)
        trials = tune_controller.get_trials()
        waiting = [t for t in trials if t.status == Trial.PAUSED]
        if trial is None and waiting and not any(t.status in (Trial.RUNNING, Trial.PENDING) for t in trials):
            # Every member left waits for one that has ended: rank them now.
            self.on_trial_result(tune_controller, waiting[0], self._trial_state[waiting[0]].last_result)
            trial = super().choose_trial_to_run(tune_controller)
        return trial

    def _exploit(self, tune_controller: Any, trial: Trial, trial_to_clone: Trial) -> None:
        """Tune's exploit, the member keeping its own index and name (Tune's copy of the source's config carries the
        source's), then have the next experiment snapshot record it. Tune's PBT hands the member the other
        member's checkpoint without invalidating the trial's cached run state, so a snapshot taken before the
        member restarts kept its own checkpoint with the new config: a driver killed then resumed the member from
        its own state and the exploit was lost (seen with Ray 2.60)."""
        identity = {key: trial.config[key] for key in ("member", "name", "replicate") if key in trial.config}
        super()._exploit(tune_controller, trial, trial_to_clone)
        trial.set_config({**trial.config, **identity})  # Tune copied the source's config: the member stays itself
        trial.run_metadata.invalidate_cache()
        tune_controller._tune_controller._mark_trial_to_checkpoint(trial)

    def _checkpoint_or_exploit(self, trial: Trial, tune_controller: Any, upper: list, lower: list) -> None:
        with self._seeded(trial):
            super()._checkpoint_or_exploit(trial, tune_controller, upper, lower)

    @contextmanager
    def _seeded(self, trial: Trial) -> Iterator[None]:
        """Tune's PBT draws with the ``random`` module: seed it for this member and epoch, then put it back."""
        outside = random.getstate()
        epoch = self._trial_state[trial].last_train_time
        random.setstate(random.Random(f"{self._seed}/{trial.config['member']}/{epoch}").getstate())
        try:
            yield
        finally:
            random.setstate(outside)


# --- the worker side: a member's state between sessions -------------------------------------------------------
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


# --- after the population has trained ---------------------------------------------------------------------------
def remove_checkpoints(experiment_dir: Path) -> int:
    """Remove the Ray checkpoints of a finished PBT experiment (and a member's staging directory, see
    ``study.members``); returns how many were removed."""
    found = [*experiment_dir.glob(f"*/{CHECKPOINT_GLOB}")]
    found += [p for p in experiment_dir.parent.parent.glob(f"{SEARCH}/*/*/{STAGING_DIR}")]
    for path in found:
        shutil.rmtree(path, ignore_errors=True)
    return len(found)


def best_member(spec: StudySpec, study_dir: Path, arm: str, replicate: int) -> tuple[TrialSummary, bool] | None:
    """The best member of one replicate of the arm by the selection rule on its final record (feasible first) and
    whether it is feasible; None when no member ran every epoch."""
    members = [t for t in read_trials(study_dir / SEARCH / arm) if replicate_of(t.trial_id) == replicate]
    ranked = confirmation_sources(spec, members, top_k=1)
    return ranked[0] if ranked else None


def schedule_arm(spec: StudySpec, arm: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``arm`` section replaying a member's records: rho and the weights per epoch, and the learning rate
    where PBT mutated it."""
    lr = ("lr",) if "optim.lr" in spec.arms[arm].pbt.mutations else ()
    return {"kind": "piecewise", "segments": schedule_from_records(records, (*CONTROL_KEYS, *lr))}


def write_schedule(spec: StudySpec, study_dir: Path, arm: str, replicate: int) -> Path | None:
    """Write ``search/<arm>/schedule-r<k>.yaml``: the best member's config with its schedule as a piecewise arm
    (the member's seed: ``diffctl train --config`` retrains the member). None when no member ran every epoch."""
    found = best_member(spec, study_dir, arm, replicate)
    if found is None:
        return None
    member = found[0]
    data = load_config(member.dir / "config.yaml").to_dict()
    data["arm"] = schedule_arm(spec, arm, read_metrics(member.dir))
    path = study_dir / SEARCH / arm / schedule_file(replicate)
    atomic_write_text(path, dump_config(config_from_dict(data)))
    return path
