"""The one searcher of a study's Tuner: the places of every phase (``study.phases.registry``) — each searching
place's searches asked as results come in (every Optuna arm's replicates, each with exactly its budget, in
batches: ``study.phases.search``), then each planned place (front, confirmation, audit, distillation, retune,
ablation, and any phase of one's own) planned once the places it waits for have ended. It names no phase.

Why one Tuner for the whole study rather than one per arm and phase: each Tuner starts its own trial actors,
which import torch and warm up (measured ~3 s per Tuner on 2 cores, more than a short trial lasts), and a
phase's last trial leaves idle CPUs until the next Tuner starts. Fairness does not need separate Tuners: each
arm's replicate keeps its own :class:`~study.phases.search.ArmSearch` (its own Optuna study and TPE state), and
it alone is asked for that replicate's trials, exactly ``budget`` times — one shared search over an "arm" choice
would let TPE starve arms; this does not. The arms' batches interleave: while one arm's batch waits for its last
trial, another arm's trials use the free CPUs, and no arm's draws depend on another's.

A PBT arm (``study.phases.pbt``) trained its populations in Tuners of their own before this one: its search has
ended from the start, and its confirmation runs replay its best members' schedules.

Each trial's Ray config is its phase's request (``study.phases.base.TrialRequest``: phase, arm label, name,
params, and what the phase sets of seed, replicate, source and the rest). The name is the trial's directory, the same in every run of the spec. The
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

from .phases.registry import PhasePlaces, phases
from .progress import live_progress
from .protocol.schema import StudySpec

Key = tuple[str, str]  # a place: (phase, arm label)


class StudySearch(Searcher):
    """Ray Tune searcher of a whole study (see the module docstring)."""

    def __init__(self, spec: StudySpec, study_dir: Path, storage: JournalStorage,
                 places: PhasePlaces | None = None) -> None:
        super().__init__()
        places = places if places is not None else PhasePlaces(phases(), spec)
        self._spec = spec
        self._study_dir = str(study_dir)
        self._places = places
        self._searches: dict[Key, list[Any]] = {}  # a searching place -> its searches, asked as results come in
        self._closed: set[Key] = set()  # places whose every trial has ended
        for phase, place in places.in_tuner():
            if searches := phase.searches(spec, place, storage):
                self._searches[place.key] = searches
        # a place run before this Tuner (a PBT arm's search, in Tuners of its own) has ended from the start
        self._closed.update(place.key for _, place in places.before_tuner())
        self._live: dict[str, tuple[str, str, str]] = {}  # Ray trial id -> (phase, label, name) of running trials
        self._plans: dict[Key, list[dict[str, Any]]] = {}  # planned place -> its runs' Ray configs
        self._given: dict[Key, int] = {}  # planned place -> runs given so far
        self._started: set[Key] = set()

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True  # what is searched and how it is ranked are the spec's

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        # The cap on concurrent trials is the searcher's own, not Tune's ConcurrencyLimiter: the limiter's pickled
        # list of live trials can outlive trials a killed driver's experiment snapshot already had as ended, and
        # then never lets another trial start.
        if len(self._live) >= self._spec.max_concurrent:
            return None
        for key, searches in self._searches.items():
            if key not in self._started:
                bound = self._bound(key)
                self._start(key, bound, bound)
            for search in searches:
                run = search.next_run(trial_id)
                if run is not None:
                    self._live[trial_id] = (*key, run["name"])
                    return run
        for key in self._searches:  # ended without a completion heard here (told by a killed driver, found again
            self._close_search_if_done(key)  # after a resume)
        waiting = any(not search.ended() for searches in self._searches.values() for search in searches)
        for _, place in self._places.in_tuner():
            key = place.key
            if key in self._closed or key in self._searches:
                continue
            if not self._closed.issuperset(place.after):
                waiting = True
                continue
            if key not in self._plans:
                self._plans[key], self._given[key] = self._plan(place), 0
                self._start(key, len(self._plans[key]), self._bound(key))
            if self._given[key] < len(self._plans[key]):
                run = self._plans[key][self._given[key]]
                self._given[key] += 1
                self._live[trial_id] = (*key, run["name"])
                return dict(run)
            self._close_if_done(key)
            waiting = waiting or key not in self._closed
        return None if waiting else Searcher.FINISHED

    def _bound(self, key: Key) -> int:
        return self._places.bound(next(p for p in self._places.places() if p.key == key))

    def _plan(self, place: Any) -> list[dict[str, Any]]:
        """The runs a planned phase makes of one place (its notes printed)."""
        planned = self._places.phase(place.phase).plan(self._spec, Path(self._study_dir), place)
        progress = live_progress()
        for note in planned.notes if progress is not None else ():
            progress.notice(note)
        return [run.ray_config() for run in planned.runs]

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        phase, label, _ = self._live.get(trial_id, (None, None, None))
        for search in self._searches.get((phase, label), ()):
            search.on_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        phase, label, name = self._live.pop(trial_id, (None, None, None))
        if (phase, label) in self._searches:
            trial_dir = Path(self._study_dir) / phase / label / name
            any(search.complete(trial_id, result, error, trial_dir) for search in self._searches[phase, label])
            self._close_search_if_done((phase, label))
        elif phase is not None:
            self._close_if_done((phase, label))

    def _close_search_if_done(self, key: Key) -> None:
        if all(search.ended() for search in self._searches[key]):
            self._close(key)

    def _close_if_done(self, key: Key) -> None:
        """Close a planned place once every run planned for it was given and has ended."""
        plans = self._plans.get(key)
        if plans is None or self._given[key] < len(plans):
            return
        if not any(place[:2] == key for place in self._live.values()):
            self._close(key)

    def _start(self, key: Key, total: int, bound: int) -> None:
        """Record once that a place has started (its trial count now known; the study total counted ``bound``)."""
        if key not in self._started:
            self._started.add(key)
            progress = live_progress()
            if progress is not None:
                progress.start_phase(*key, total, replaces=bound)

    def _close(self, key: Key) -> None:
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
        for (phase, label), searches in self._searches.items():
            for search in searches:
                search.reconcile(Path(self._study_dir) / phase / label)
        for key in self._plans:
            if key not in self._closed:
                self._given[key] = 0
