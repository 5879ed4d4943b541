"""The one searcher of a study's Tuner: every arm's Optuna search with exactly its budget, then each arm's
confirmation runs (its best configurations on the spec's fresh seeds) once that arm's search has ended.

Why one Tuner for the whole study rather than one per arm and phase: each Tuner starts its own trial actors,
which import torch and warm up (measured ~3 s per Tuner on 2 cores, more than a short trial lasts), and a
phase's last trial leaves idle CPUs until the next Tuner starts. Fairness does not need separate Tuners: each
arm keeps its own :class:`~study.phases.search.ArmSearch` (its own Optuna study and TPE state), and the arm's
searcher alone is asked for that arm's trials, exactly ``budget`` times — one shared search over an "arm"
choice would let TPE starve arms; this does not.

A PBT arm (``study.phases.pbt``) trained its population in a Tuner of its own before this one: its search has ended
from the start, and its confirmation runs replay its best member's schedule.

Order: the search trials of the arms in spec order (an arm's TPE sees its earlier trials exactly as in a Tuner
of its own), then the confirmation runs of every arm whose search trials have all ended, then the distilled
baselines (``study.phases.distill``) of every adaptive arm whose confirmation runs have all ended, and the ablation
options (``study.phases.ablate``) around the ablated arm once its confirmation runs have all ended (whatever its
distillation's progress). Each trial's Ray config says where it belongs: ``{"phase", "arm", "params"}`` (+
``sampling`` for a search trial; ``seed``, ``source_trial``, ``source_feasible`` for a confirmation run; and
``source_arm``, ``distill``, ``arm_config`` for a distilled run; ``source_arm``, ``ablate_axis``,
``ablate_option``, ``overrides`` for an ablation run). The searcher's state (what was asked, what ended, the
confirmation, distillation and ablation plans) is pickled into Tune's experiment snapshot, so
``Tuner.restore`` continues it.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from optuna.storages import JournalStorage
from ray.tune.search import Searcher

from .phases import ablate, confirm, distill
from .phases.search import ArmSearch, stopped_reason
from .progress import live_progress
from .spec.plan import DERIVED, Planned, confirm_runs_per_arm, derived_places, place_bound
from .spec.ranking import tune_metrics
from .spec.schema import StudySpec
from .trialdir import CONFIRM, ERROR, FINISHED, SEARCH, STOPPED, mark_finished, read_trials

PLANNED = {CONFIRM: confirm, **dict(zip(DERIVED, (distill, ablate)))}  # the planned phases (study.phases)

class StudySearch(Searcher):
    """Ray Tune searcher of a whole study (see the module docstring)."""

    def __init__(self, spec: StudySpec, study_dir: Path, storage: JournalStorage) -> None:
        super().__init__()
        self._spec = spec
        self._study_dir = str(study_dir)
        # A PBT arm's members ran in a Tuner of their own before this one (study.pbt): its search has ended.
        self._arms = {arm: ArmSearch(spec, arm, storage) for arm in spec.arms if not spec.arms[arm].is_pbt}
        self._asked = {arm: arm_spec.budget if arm_spec.is_pbt else 0 for arm, arm_spec in spec.arms.items()}
        self._live: dict[str, tuple[str, str]] = {}  # trial id -> (phase, arm) of trials not ended yet
        self._plans: dict[str, list[dict[str, Any]]] = {}  # arm -> its confirmation runs, once its search ended
        self._given = {arm: 0 for arm in spec.arms}  # confirmation runs suggested per arm
        # (phase, arm) -> its distilled or ablation runs, planned once its confirmation ended; and how many given
        self._derived_plans: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._derived_given: dict[tuple[str, str], int] = {}
        self._ended: set[str] = set()  # trial ids that ended
        self._closed: set[tuple[str, str]] = set()  # (phase, arm) whose every trial has ended

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True  # metrics and modes are the spec's, set on every arm's searcher

    def search_ended(self, arm: str) -> bool:
        """Whether every search trial of ``arm`` was asked and has ended."""
        return self._asked[arm] == self._spec.arms[arm].budget and not self._live_in(SEARCH, arm)

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        for arm, arm_spec in self._spec.arms.items():
            if self._asked[arm] < arm_spec.budget:
                if self._asked[arm] == 0:
                    _phase_started(SEARCH, arm, arm_spec.budget, arm_spec.budget)
                params = self._arms[arm].suggest(trial_id)
                self._asked[arm] += 1
                self._live[trial_id] = (SEARCH, arm)
                return {"phase": SEARCH, "arm": arm, "params": params, "sampling": self._arms[arm].sampling[trial_id]}
        waiting = False
        for arm in self._spec.arms:
            if not self.search_ended(arm):
                waiting = True
                continue
            if arm not in self._plans:
                self._plans[arm] = self._plan(CONFIRM, arm)
                _phase_started(CONFIRM, arm, len(self._plans[arm]), confirm_runs_per_arm(self._spec, arm))
            run = self._give(trial_id, self._plans[arm], self._given, arm)
            if run is not None:
                return run
            self._check_confirmed(arm)
            if (CONFIRM, arm) not in self._closed:
                waiting = True  # its distilled baselines and ablation start from its ended confirmation runs
                continue
            for phase in DERIVED:
                run = self._next_derived(trial_id, phase, arm)
                if run is not None:
                    return run
                waiting = waiting or any(self._live_in(phase, label) for label in self._derived_labels(phase, arm))
        return None if waiting else Searcher.FINISHED

    def _give(self, trial_id: str, plans: list[dict[str, Any]], given: dict, key: Any) -> dict[str, Any] | None:
        """The next planned run (``given[key]`` of ``plans`` were given) that did not end in an earlier session."""
        while given[key] < len(plans):
            run = plans[given[key]]
            given[key] += 1
            if not self._ended_already(run):
                self._live[trial_id] = (run["phase"], run["arm"])
                return dict(run)
        return None

    def _derived_labels(self, phase: str, arm: str) -> list[str]:
        return [label for p, label, source in derived_places(self._spec) if (p, source) == (phase, arm)]

    def _next_derived(self, trial_id: str, phase: str, arm: str) -> dict[str, Any] | None:
        """The next distilled or ablation run made from an arm whose confirmation has ended (planned then)."""
        key = (phase, arm)
        if key not in self._derived_plans:
            plans = self._plan(phase, arm)
            self._derived_plans[key], self._derived_given[key] = plans, 0
            for label in self._derived_labels(phase, arm):
                count = sum(plan["arm"] == label for plan in plans)
                _phase_started(phase, label, count, place_bound(self._spec, phase, label))
        run = self._give(trial_id, self._derived_plans[key], self._derived_given, key)
        if run is None:  # every run given: close the labels whose runs have all ended (or that had none to make)
            for label in self._derived_labels(phase, arm):
                self._check_derived(phase, label)
        return run

    def _plan(self, phase: str, arm: str) -> list[dict[str, Any]]:
        """The runs a planned phase makes of ``arm`` (its notes printed)."""
        planned: Planned = PLANNED[phase].plan(self._spec, Path(self._study_dir), arm)
        progress = live_progress()
        for note in planned.notes if progress is not None else ():
            progress.notice(note)
        return planned.runs

    def _check_derived(self, phase: str, label: str) -> None:
        """Close a distilled baseline's or ablation option's phase once every run planned for it was given and
        has ended."""
        source = next(s for p, lab, s in derived_places(self._spec) if (p, lab) == (phase, label))
        key = (phase, source)
        plans = self._derived_plans.get(key)
        if plans is None or self._derived_given[key] < len(plans) or self._live_in(phase, label):
            return
        self._close(phase, label)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        phase, arm = self._live.get(trial_id, (None, None))
        if phase == SEARCH:
            self._arms[arm].on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self._ended.add(trial_id)
        phase, arm = self._live.pop(trial_id, (None, None))
        if phase == SEARCH:
            self._arms[arm].on_trial_complete(trial_id, result=result, error=error)
            epoch = (result or {}).get("epoch")
            if not error and self._spec.asha is not None and isinstance(epoch, int) and epoch < self._spec.epochs:
                # stopped at a rung: its trainable cannot say so (one that ran every epoch wrote its own status)
                mark_finished(Path(self._study_dir) / SEARCH / arm / trial_id, STOPPED, stopped_reason(epoch))
            if self.search_ended(arm):
                self._close(SEARCH, arm)
        elif phase == CONFIRM:
            self._check_confirmed(arm)
        elif phase in DERIVED:
            self._check_derived(phase, arm)

    def _live_in(self, phase: str, arm: str) -> bool:
        return any(place == (phase, arm) for place in self._live.values())

    def _check_confirmed(self, arm: str) -> None:
        if self._given[arm] == len(self._plans[arm]) and not self._live_in(CONFIRM, arm):
            self._close(CONFIRM, arm)

    def _close(self, phase: str, arm: str) -> None:
        """Record once that every trial of a phase of one arm has ended."""
        if (phase, arm) not in self._closed:
            self._closed.add((phase, arm))
            progress = live_progress()
            if progress is not None:
                progress.end_phase(phase, arm)

    def _ended_already(self, run: dict[str, Any]) -> bool:
        """Whether a run of this source and seed (confirmation or distilled) ended in an earlier session, unknown
        to the snapshot this searcher was restored from (see :meth:`restore`)."""
        return any(
            t.status in FINISHED and not t.abandoned
            and (t.info.source_trial, t.info.seed) == (run["source_trial"], run["seed"])
            for t in read_trials(Path(self._study_dir) / run["phase"] / run["arm"])
        )

    def _adopt_unknown_trials(self) -> None:
        """Count the search trials that a killed driver asked and that ended after its last snapshot: without
        this, the restored searcher would ask for them again and an arm would exceed its budget. (A trial that
        was still running is abandoned instead: Ray does not know it, and the searcher asks for a new one.)"""
        for arm in self._arms:
            for trial in read_trials(Path(self._study_dir) / SEARCH / arm):
                known = trial.trial_id in self._ended or trial.trial_id in self._live
                if known or trial.status not in FINISHED or trial.abandoned:
                    continue
                self._asked[arm] += 1
                self._ended.add(trial.trial_id)
                error = trial.status == ERROR
                record = {**trial.last, **tune_metrics(self._spec, trial.last)} if trial.last and not error else None
                self._arms[arm].adopt(trial.trial_id, record, error=error)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__.copy(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            state = pickle.load(f)
        # A snapshot taken before the ablation phase keeps its distilled runs by arm (none: before distillation).
        distill_phase = DERIVED[0]
        state.setdefault("_derived_plans", {(distill_phase, a): p for a, p in state.pop("_distill_plans", {}).items()})
        state.setdefault("_derived_given", {(distill_phase, a): n for a, n in state.pop("_distill_given", {}).items()})
        self.__dict__.update(state)
        self._adopt_unknown_trials()


def _phase_started(phase: str, arm: str, total: int, counted: int) -> None:
    progress = live_progress()
    if progress is not None:
        progress.start_phase(phase, arm, total, replaces=counted)
