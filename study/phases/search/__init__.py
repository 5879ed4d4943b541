"""The search phase of an Optuna arm: its define-by-run space, a seeded TPE sampler, the Optuna study it tells
(in the study's journal, ``study.journal``), and its early stopping — the same sampled configurations, rung
decisions and picks whether the machine is idle or busy, and after a kill and resume.

**Batches.** Each replicate of an arm (``search_replicates``) asks Optuna for ``search_batch`` trials at a time,
in slot order, and tells Optuna their ends in slot order once every trial of the batch has ended; only then is
the next batch asked. Before each ask the sampler's random state is reseeded from the arm, the replicate and the
slot, so that a draw depends only on the trials Optuna holds (the earlier batches, told, and the batch's earlier
slots, pending: Optuna 5's constant liar), never on timing. A batch asked by a driver that was then killed is
found again in the journal (each asked trial carries its slot) and not asked twice.

**Optuna's view.** One single-objective study per arm and replicate (``<arm>``, then ``<arm>.r1``, ...),
direction that of the spec's selection metric; every epoch whose record has it, the trial reports it as an
intermediate value. A trial that ran every epoch is ``COMPLETE`` with its final selection value and the spec's
constraints (``Trial.set_constraint``, <= 0 satisfied), so TPE and ``best_trial`` see the feasibility the study's
ranking uses; a trial early stopping stopped is ``PRUNED`` (its intermediate values end at the rung); a
diverged or failed trial is ``FAIL``. User attributes: ``name``, ``slot``, ``batch``, ``replicate``,
``params`` (the sampled params as JSON), ``sampling`` (``defaults``: the first trial of every replicate, the
arm's own defaults, ``study.protocol.reference``, which no rung stops; then TPE's start-up or its model), and at the end
``ray_trial_id``, ``status``, ``epochs``, ``reason``. The other objectives are reported by the analysis, not
searched.

**Early stopping** (:class:`SearchPruner`, ``asha`` in the spec): successive halving at the rungs
grace_period x reduction_factor^k below the last epoch, judged on ``study.protocol.ranking.rung_score`` (the selection
metric alone at every rung: the constraints judge the finished trial, see there why). A trial continues when its score is not below the
(1 - 1/reduction_factor) quantile of the scores its arm-replicate's trials of earlier batches recorded at that rung
— Ray's ASHA rule, against a set that is complete and fixed when the trial's batch starts (bit-identical records
count once). The first batch is never stopped. The rung epochs are evaluated in full (``study.protocol.configs``).
"""

from __future__ import annotations

import json
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Import Optuna directly first: Ray's wrapper hides a broken Optuna install behind "Optuna must be installed!".
import optuna
from optuna.storages import JournalStorage
from optuna.trial import TrialState

from ...protocol.constraints import is_finite_number
from ...protocol.plan import search_name
from ...protocol.ranking import constraint_values
from ...protocol.reference import DEFAULTS, default_params
from ...protocol.schema import StudySpec
from ...optuna_space import SearchSpace
from ...journal import journal_storage
from ...trialdir import ERROR, FINISHED, OK, SEARCH, STOPPED, mark_finished, read_info, read_metrics, read_trials
from ..base import SearchMethod, TrialRequest

RANDOM, MODEL = "random", "model"  # how a search trial's parameters were drawn (TPE start-up or its model)
ORPHAN = "orphan"  # the status of an Optuna trial asked and never run (a killed half-made ask, a search cut short)


def study_name(arm: str, replicate: int) -> str:
    """The Optuna study of one replicate of an arm's search: the arm label, then ``<arm>.r1``, ``<arm>.r2``, ..."""
    return arm if replicate == 0 else f"{arm}.r{replicate}"


def arm_sampler_seed(spec: StudySpec, arm: str, replicate: int = 0) -> int:
    """The seed of one replicate of an arm's sampler: the spec's ``sampler_seed`` moved by a hash of the arm label
    (two arms with the same key and range must not draw identical values; adding an arm changes no other arm's
    draws) and, for a replicate after the first, by a hash of its number (seeds derived apart)."""
    seed = spec.sampler_seed + zlib.crc32(arm.encode("utf-8"))
    if replicate:
        seed += zlib.crc32(f"{arm}/replicate {replicate}".encode("utf-8"))
    return seed % 2**31


def tpe_sampler(spec: StudySpec, arm: str, replicate: int = 0) -> optuna.samplers.TPESampler:
    """Seeded TPE with the arm's start-up trials (:meth:`~study.protocol.schema.ArmSpec.startup`); ``group=True``
    models each conditional sub-space on its own (it needs multivariate). Optuna 5's constant liar (on by default)
    stays on: the pending trials of a batch are modelled as such, so a batch's suggestions spread out."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # group is "experimental"
        return optuna.samplers.TPESampler(
            seed=arm_sampler_seed(spec, arm, replicate), n_startup_trials=spec.arms[arm].startup(),
            multivariate=True, group=True, constant_liar=True,
        )


def _reseed(sampler: optuna.samplers.TPESampler, seed: int) -> None:
    """Put TPE's random states (its own and its start-up sampler's) at ``seed``."""
    sampler._rng.rng.seed(seed)
    sampler._random_sampler._rng.rng.seed(seed)


@dataclass
class Slot:
    """One search trial of an arm's replicate, from its ask to its tell."""

    slot: int
    number: int  # the Optuna trial number
    params: dict[str, Any]
    sampling: str
    ray_trial_id: str | None = None  # the Ray trial running it (None: not given yet, or given by a killed driver)
    result: dict[str, Any] | None = None  # its last record, once it has ended
    ended: bool = False
    error: bool = False


class ArmSearch:
    """The Optuna search of one replicate of one arm, in batches (see the module docstring). Picklable: the Tune
    searcher's state holds it (the Optuna study is opened again from the journal after a restore)."""

    def __init__(self, spec: StudySpec, arm: str, replicate: int, storage: JournalStorage) -> None:
        self.spec, self.arm, self.replicate, self.storage = spec, arm, replicate, storage
        self.name = study_name(arm, replicate)
        self.slots: list[Slot] = []
        self._study: optuna.Study | None = None
        self._space = SearchSpace(spec.arms[arm].space)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_study": None}

    @property
    def study(self) -> optuna.Study:
        if self._study is None:
            optuna.logging.set_verbosity(optuna.logging.WARNING)  # one "study created" line per arm is noise here
            direction = "maximize" if self.spec.selection.mode == "max" else "minimize"
            self._study = optuna.create_study(study_name=self.name, storage=self.storage, direction=direction,
                                              sampler=tpe_sampler(self.spec, self.arm, self.replicate),
                                              load_if_exists=True)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                self._study.set_metric_names([self.spec.selection.metric])
        return self._study

    @property
    def budget(self) -> int:
        return self.spec.arms[self.arm].budget

    def ended(self) -> bool:
        """Whether every search trial of this replicate was asked and has ended."""
        return len(self.slots) == self.budget and all(s.ended for s in self.slots)

    def next_run(self, ray_trial_id: str) -> dict[str, Any] | None:
        """The Ray config of the next search trial, given to ``ray_trial_id``; None when the budget is given or the
        current batch has to end before the next is asked."""
        waiting = [s for s in self.slots if s.ray_trial_id is None]
        while not waiting:  # a batch found told by a killed driver has nothing to give: on to the next
            if len(self.slots) == self.budget or not all(s.ended for s in self.slots):
                return None
            self._ask_batch()
            waiting = [s for s in self.slots if s.ray_trial_id is None]
        slot = waiting[0]
        slot.ray_trial_id = ray_trial_id
        return TrialRequest(phase=SEARCH, arm=self.arm, name=search_name(self.replicate, slot.slot),
                            params=slot.params, sampling=slot.sampling, replicate=self.replicate,
                            batch=slot.slot // self.spec.search_batch, slot=slot.slot).ray_config()

    def _ask_batch(self) -> None:
        """Ask Optuna the next batch's trials in slot order (or find those a killed driver asked already)."""
        study, start = self.study, len(self.slots)
        end = min(start + self.spec.search_batch, self.budget)
        asked = {}
        for trial in study.get_trials(deepcopy=False):
            if "slot" in trial.user_attrs:  # set last: the trial was asked whole
                if trial.user_attrs.get("status") != ORPHAN:
                    asked.setdefault(trial.user_attrs["slot"], trial)
            elif trial.state == TrialState.RUNNING:  # a killed driver's half-made ask: not pending for the
                study._storage.set_trial_user_attr(trial._trial_id, "status", ORPHAN)  # constant liar; asked again
                study.tell(trial.number, state=TrialState.FAIL)
        for slot in range(start, end):
            if slot in asked:  # asked by a killed driver after its searcher snapshot; maybe run and told too
                self.slots.append(_asked_slot(slot, asked[slot], self.spec.selection.metric))
                continue
            # TPE draws at random while the study has fewer finished trials than its start-up count (Optuna 5,
            # TPESampler._sample_relative): count them as it does, before it asks.
            finished = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
            defaults = slot == 0 and self.spec.defaults_first
            if defaults and not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
                # the arm's own defaults first (a killed driver's enqueued trial is still waiting: not twice)
                study.enqueue_trial(self._space.encoded(default_params(self.spec, self.arm)))
            _reseed(study.sampler, arm_sampler_seed(self.spec, self.arm, self.replicate) + slot)
            trial = study.ask()
            params = self._space(trial)
            sampling = DEFAULTS if defaults else RANDOM if finished < self.spec.arms[self.arm].startup() else MODEL
            attrs = {"name": search_name(self.replicate, slot), "replicate": self.replicate,
                     "batch": slot // self.spec.search_batch, "params": json.dumps(params, sort_keys=True),
                     "sampling": sampling, "slot": slot}  # the slot last: it marks the ask complete
            for key, value in attrs.items():
                trial.set_user_attr(key, value)
            self.slots.append(Slot(slot, trial.number, params, sampling))

    def reconcile(self, arm_dir: Path) -> None:
        """After a restore, take each given trial's state from its files (``<study>/search/<arm>/``): one that ended
        ends here too, with its last record; any other is given again (Tune may or may not run it on: the
        experiment snapshot and this searcher's were taken apart). Then tell a batch whose trials have all ended."""
        for slot in self.slots:
            if slot.ended:
                continue
            trial_dir = arm_dir / search_name(self.replicate, slot.slot)
            info = read_info(trial_dir)
            if info is not None and info.status in FINISHED:
                records = read_metrics(trial_dir)
                self._report(slot, records)  # its curve as its files hold it: results sent to a killed driver are lost
                slot.ended, slot.error = True, info.status == ERROR
                slot.result = records[-1] if records and not slot.error else None
            else:
                slot.ray_trial_id = None
        if self.slots and all(s.ended for s in self.slots):
            for done in self.slots:
                self._tell(done)

    def _slot(self, ray_trial_id: str) -> Slot | None:
        return next((s for s in self.slots if s.ray_trial_id == ray_trial_id), None)

    def on_result(self, ray_trial_id: str, record: dict[str, Any]) -> None:
        """Report the selection metric of an epoch's record as the trial's intermediate value (once per epoch)."""
        slot = self._slot(ray_trial_id)
        if slot is not None:
            self._report(slot, [record])

    def _report(self, slot: Slot, records: list[dict[str, Any]]) -> None:
        """Report the selection metric of each ok record whose epoch the running trial has not reported yet."""
        frozen = self._frozen(slot)
        if frozen.state != TrialState.RUNNING:
            return
        trial, reported = optuna.Trial(self.study, frozen._trial_id), set(frozen.intermediate_values)
        for record in records:
            value, epoch = record.get(self.spec.selection.metric), record.get("epoch")
            if record.get("status") == OK and is_finite_number(value) and isinstance(epoch, int) \
                    and epoch not in reported:
                trial.report(float(value), epoch)
                reported.add(epoch)

    def on_complete(self, ray_trial_id: str, record: dict[str, Any] | None, error: bool,
                    history: list[dict[str, Any]] = ()) -> Slot | None:
        """A search trial ended; once every trial of its batch has, tell Optuna their ends in slot order. Returns the
        trial's slot (None: not this search's). ``history``: the trial's records as its files hold them, so that
        its curve is whole even where results never reached this driver (buffered, or sent to a killed one)."""
        slot = self._slot(ray_trial_id)
        if slot is None:
            return None
        self._report(slot, [*history, *([record] if record else [])])  # a result that stopped it arrives only here
        slot.ended, slot.result, slot.error = True, record, error
        if all(s.ended for s in self.slots):
            for done in self.slots:
                self._tell(done)
        return slot

    def complete(self, ray_trial_id: str, record: dict[str, Any] | None, error: bool, trial_dir: Path) -> bool:
        """:meth:`on_complete` with the trial's records read from ``trial_dir``, which a trial early stopping stopped
        is marked with (its trainable cannot say so; one that ran every epoch wrote its own status). Whether the
        trial was this search's."""
        slot = self.on_complete(ray_trial_id, record, error, read_metrics(trial_dir))
        if slot is not None and self.status(slot) == STOPPED:
            mark_finished(trial_dir, STOPPED, stopped_reason((record or {}).get("epoch")))
        return slot is not None

    def status(self, slot: Slot) -> str:
        """ok (every epoch), stopped (by early stopping), diverged or error."""
        record = slot.result or {}
        if slot.error or not record:
            return "error"
        if record.get("status") == OK and record.get("epoch", 0) < self.spec.epochs:
            return "stopped"
        return str(record.get("status"))

    def _frozen(self, slot: Slot) -> optuna.trial.FrozenTrial:
        storage = self.study._storage
        return storage.get_trial(storage.get_trial_id_from_study_id_trial_number(self.study._study_id, slot.number))

    def _tell(self, slot: Slot) -> None:
        study = self.study
        frozen = self._frozen(slot)
        if frozen.state.is_finished():  # told by a driver killed before its searcher snapshot
            return
        record, status = slot.result or {}, self.status(slot)
        attrs = {"ray_trial_id": slot.ray_trial_id, "status": status, "epochs": int(record.get("epoch", 0)),
                 "reason": record.get("reason")}
        trial = optuna.Trial(study, frozen._trial_id)
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        if status == OK:
            for key, value in constraint_values(self.spec, record).items():
                if key not in frozen.constraints:  # set before a kill that came before the tell
                    trial.set_constraint(key, value)
            study.tell(slot.number, float(record[self.spec.selection.metric]))
        else:
            study.tell(slot.number, state=TrialState.PRUNED if status == "stopped" else TrialState.FAIL)


def _asked_slot(slot: int, trial: optuna.trial.FrozenTrial, metric: str) -> Slot:
    """The slot of a trial a killed driver asked; one it told already has ended (its last record as Optuna holds
    it) and is not given again."""
    attrs = trial.user_attrs
    found = Slot(slot, trial.number, json.loads(attrs["params"]), attrs["sampling"])
    if trial.state.is_finished():
        found.ray_trial_id = attrs.get("ray_trial_id") or f"told-{trial.number}"
        found.ended, found.error = True, attrs.get("status") == ERROR
        found.result = {"status": attrs.get("status"), "epoch": attrs.get("epochs"), "reason": attrs.get("reason"),
                        **({metric: trial.value} if trial.state == TrialState.COMPLETE else {})}
    return found


def close_orphans(storage: JournalStorage, name: str) -> int:
    """Mark FAIL the Optuna trials of a finished search that are still RUNNING (asked, never run: a spec changed
    under a resumed study, or a search cut short). Returns how many."""
    study = optuna.load_study(study_name=name, storage=storage)
    orphans = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
    for trial in orphans:
        storage.set_trial_user_attr(trial._trial_id, "status", ORPHAN)
        study.tell(trial.number, state=TrialState.FAIL)
    return len(orphans)


def stopped_reason(epoch: Any) -> str:
    return f"stopped early after epoch {epoch} (its rung score was below the cut of its arm's earlier batches)"


class OptunaSearch(SearchMethod):
    """``search: optuna``: TPE asked in batches inside the study's Tuner, one :class:`ArmSearch` per replicate,
    stopped early by :class:`SearchPruner` when the spec has ``asha``."""

    kind = "optuna"

    def searches(self, spec: StudySpec, arm: str, storage: JournalStorage) -> list[ArmSearch]:
        return [ArmSearch(spec, arm, replicate, storage) for replicate in range(spec.search_replicates)]

    def scheduler(self, spec: StudySpec, study_dir: Path) -> Any:
        """:class:`~study.phases.search.pruner.SearchPruner` under ``asha`` (imported here: ``study check`` and
        ``study status`` load no Ray)."""
        if spec.asha is None:
            return None
        from .pruner import SearchPruner

        return SearchPruner(spec, study_dir)

    def prunes(self, spec: StudySpec) -> bool:
        return spec.asha is not None

    def interrupted(self, spec: StudySpec, study_dir: Path, arm: str) -> bool:
        """The study's Tuner can end with every trial it knows ended and a search not done (an interrupt between
        trials): its trials on disk say."""
        ran = [t for t in read_trials(study_dir / SEARCH / arm) if not t.abandoned]
        return len(ran) < self.bound(spec, arm)

    def finish(self, spec: StudySpec, study_dir: Path, arm: str) -> None:
        storage = journal_storage(study_dir)
        for replicate in range(spec.search_replicates):
            close_orphans(storage, study_name(arm, replicate))


METHOD = OptunaSearch()
