"""The one searcher of a study's Tuner: every Optuna arm's search (each replicate with exactly its budget, in
batches: ``study.phases.search``), then every planned place (``study.spec.plan``: confirmation, audit,
distillation, retune, ablation) once the place it waits for has ended.

Why one Tuner for the whole study rather than one per arm and phase: each Tuner starts its own trial actors,
which import torch and warm up (measured ~3 s per Tuner on 2 cores, more than a short trial lasts), and a
phase's last trial leaves idle CPUs until the next Tuner starts. Fairness does not need separate Tuners: each
arm's replicate keeps its own :class:`~study.phases.search.ArmSearch` (its own Optuna study and TPE state), and
it alone is asked for that replicate's trials, exactly ``budget`` times — one shared search over an "arm" choice
would let TPE starve arms; this does not. The arms' batches interleave: while one arm's batch waits for its last
trial, another arm's trials use the free CPUs, and no arm's draws depend on another's.

A PBT arm (``study.phases.pbt``) trained its populations in Tuners of their own before this one: its search has
ended from the start, and its confirmation runs replay its best members' schedules.

Each trial's Ray config says where it belongs: ``{"phase", "arm", "name", "params"}`` (+ ``sampling``,
``replicate``, ``batch``, ``slot`` for a search trial; ``seed``, ``source_trial``, ``source_feasible`` and more
for a planned run, see each phase). The name is the trial's directory, the same in every run of the spec. The
searcher's state (the searches, the plans, what was given and what ended) is pickled into Tune's experiment
snapshot, so ``Tuner.restore`` continues it; a trial given after the last snapshot by a killed driver is given
again under its name, and continues from its own files (or, if it had ended, reports its last record again).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from optuna.storages import JournalStorage
from ray.tune.search import Searcher

from .phases import ablate, audit, confirm, distill, front, retune
from .phases.search import ArmSearch, stopped_reason
from .progress import live_progress
from .spec.plan import (
    ABLATE,
    AUDIT,
    CONFIRM,
    DISTILL,
    FRONT,
    RETUNE,
    SEARCH,
    Planned,
    optuna_arms,
    place_bound,
    planned_places,
    replicate_of,
)
from .spec.schema import StudySpec
from .trialdir import STOPPED, mark_finished, read_metrics

PLANNERS = {FRONT: front, CONFIRM: confirm, AUDIT: audit, DISTILL: distill, RETUNE: retune, ABLATE: ablate}


class StudySearch(Searcher):
    """Ray Tune searcher of a whole study (see the module docstring)."""

    def __init__(self, spec: StudySpec, study_dir: Path, storage: JournalStorage) -> None:
        super().__init__()
        self._spec = spec
        self._study_dir = str(study_dir)
        self._searches = {(arm, rep): ArmSearch(spec, arm, rep, storage)
                          for arm in optuna_arms(spec) for rep in range(spec.search_replicates)}
        self._live: dict[str, tuple[str, str, str]] = {}  # Ray trial id -> (phase, label, name) of running trials
        self._plans: dict[tuple[str, str], list[dict[str, Any]]] = {}  # planned place -> its runs
        self._given: dict[tuple[str, str], int] = {}  # planned place -> runs given so far
        # Places whose every trial has ended (a PBT arm's search: in its own Tuner, before this one).
        self._closed: set[tuple[str, str]] = {(SEARCH, arm) for arm, a in spec.arms.items() if a.is_pbt}
        self._started: set[tuple[str, str]] = set()

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True  # what is searched and how it is ranked are the spec's

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        # The cap on concurrent trials is the searcher's own, not Tune's ConcurrencyLimiter: the limiter's pickled
        # list of live trials can outlive trials a killed driver's experiment snapshot already had as ended, and
        # then never lets another trial start.
        if len(self._live) >= self._spec.max_concurrent:
            return None
        for (arm, rep), search in self._searches.items():
            if (SEARCH, arm) not in self._started:
                self._start(SEARCH, arm, place_bound(self._spec, SEARCH, arm), place_bound(self._spec, SEARCH, arm))
            run = search.next_run(trial_id)
            if run is not None:
                self._live[trial_id] = (SEARCH, arm, run["name"])
                return run
        for arm in {arm for arm, _ in self._searches}:  # ended without a completion heard here (told by a killed
            self._close_search_if_done(arm)              # driver, found again after a resume)
        waiting = any(not search.ended() for search in self._searches.values())
        for place in planned_places(self._spec):
            key = (place.phase, place.label)
            if key in self._closed:
                continue
            if not self._closed.issuperset(place.after):
                waiting = True
                continue
            if key not in self._plans:
                self._plans[key], self._given[key] = self._plan(place.phase, place.label), 0
                self._start(place.phase, place.label, len(self._plans[key]),
                            place_bound(self._spec, place.phase, place.label))
            if self._given[key] < len(self._plans[key]):
                run = self._plans[key][self._given[key]]
                self._given[key] += 1
                self._live[trial_id] = (place.phase, place.label, run["name"])
                return dict(run)
            self._close_if_done(key)
            waiting = waiting or key not in self._closed
        return None if waiting else Searcher.FINISHED

    def _plan(self, phase: str, label: str) -> list[dict[str, Any]]:
        """The runs a planned phase makes of one place (its notes printed)."""
        planned: Planned = PLANNERS[phase].plan(self._spec, Path(self._study_dir), label)
        progress = live_progress()
        for note in planned.notes if progress is not None else ():
            progress.notice(note)
        return planned.runs

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        phase, arm, name = self._live.get(trial_id, (None, None, None))
        if phase == SEARCH:
            self._searches[arm, replicate_of(name)].on_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        phase, label, name = self._live.pop(trial_id, (None, None, None))
        if phase == SEARCH:
            search = self._searches[label, replicate_of(name)]
            trial_dir = Path(self._study_dir) / SEARCH / label / name
            slot = search.on_complete(trial_id, result, error, read_metrics(trial_dir))
            if slot is not None and search.status(slot) == STOPPED:
                # stopped at a rung: its trainable cannot say so (one that ran every epoch wrote its own status)
                mark_finished(trial_dir, STOPPED, stopped_reason(result.get("epoch")))
            self._close_search_if_done(label)
        elif phase is not None:
            self._close_if_done((phase, label))

    def _close_search_if_done(self, arm: str) -> None:
        if all(s.ended() for (label, _), s in self._searches.items() if label == arm):
            self._close((SEARCH, arm))

    def _close_if_done(self, key: tuple[str, str]) -> None:
        """Close a planned place once every run planned for it was given and has ended."""
        plans = self._plans.get(key)
        if plans is None or self._given[key] < len(plans):
            return
        if not any(place[:2] == key for place in self._live.values()):
            self._close(key)

    def _start(self, phase: str, label: str, total: int, bound: int) -> None:
        """Record once that a place has started (its trial count now known; the study total counted ``bound``)."""
        if (phase, label) not in self._started:
            self._started.add((phase, label))
            progress = live_progress()
            if progress is not None:
                progress.start_phase(phase, label, total, replaces=bound)

    def _close(self, key: tuple[str, str]) -> None:
        """Record once that every trial of a place has ended."""
        if key not in self._closed:
            self._closed.add(key)
            progress = live_progress()
            if progress is not None:
                progress.end_phase(*key)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__.copy(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))
        self._reconcile()

    def _reconcile(self) -> None:
        """Trust the trial files over the snapshot. Tune restores its trials from its experiment snapshot, which a
        killed driver may have written before or after this searcher's (seen with Ray 2.60: a searcher state two
        trials older than the trials Tune restored, which then ended without this searcher hearing of it). So: a
        search trial that ended on disk ends here; every other given trial, and every run of an open planned place,
        is given again under its name — a run that ended reports its last record and returns, one that runs on
        waits for the lock of the session Tune restored. Completions of Ray trials this searcher no longer knows
        are ignored."""
        self._live = {}
        for (arm, _), search in self._searches.items():
            search.reconcile(Path(self._study_dir) / SEARCH / arm)
        for key in self._plans:
            if key not in self._closed:
                self._given[key] = 0
