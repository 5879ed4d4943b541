"""Terminal progress of a study: one line when a phase starts and one when a trial ends — which arm, trials
done / total, the best feasible selection value so far, elapsed and estimated time left.

Trials print nothing themselves (Ray's logs stay small). Tune pickles the callbacks of an experiment and hands
back copies on ``Tuner.restore``, so :class:`ProgressCallback` holds no state: it forwards to the driver's live
:class:`StudyProgress`, which the runner installs with :func:`install`.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ray import tune

from .protocol.ranking import best_trial, is_feasible, selection_value
from .protocol.schema import StudySpec
from .state import PHASE_DONE, PHASE_RUNNING, read_state, set_phase
from .trialdir import FINISHED, OK, read_trials, trial_name, trial_place


@dataclass
class _Phase:
    """Progress of one phase of one arm: its trials, those finished, the best feasible final record."""

    total: int
    done: int
    best: dict[str, Any] | None


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


class StudyProgress:
    """Counts finished trials over the whole study and prints progress lines. Trials of several arms and phases
    run side by side in the study's one Tuner, so each line names its phase and arm."""

    def __init__(self, spec: StudySpec, study_dir: Path, places: Any, out: TextIO = sys.stdout) -> None:
        self.spec, self.study_dir, self.out = spec, study_dir, out
        self.start = time.monotonic()
        self.places = places  # the study's study.phases.registry.PhasePlaces
        self.total = places.total()
        self.counted: set[tuple[str, str, str]] = set()  # (phase, arm, name) of trials that finished, in any session
        self.done_now = 0
        self.phases: dict[tuple[str, str], _Phase] = {}
        self._known: dict[tuple[str, str], int] = {}  # place -> the trial count the total holds for it
        phases = read_state(study_dir)["phases"]
        for place in places.places():
            phase, arm = place.key
            trials = read_trials(study_dir / phase / arm)
            self.counted.update((phase, arm, t.trial_id) for t in trials if t.status in FINISHED)
            if places.phase(phase).plans and phases.get(phase, {}).get(arm) == PHASE_DONE:
                self._count(phase, arm, len(trials), places.bound(place))

    def _count(self, phase: str, arm: str, total: int, bound: int) -> None:
        """Count ``total`` trials for a place in the study total, which held ``bound`` for it before (once per
        place: a place resumed after a kill is not subtracted twice)."""
        self.total += total - self._known.get((phase, arm), bound)
        self._known[phase, arm] = total

    def start_phase(self, phase: str, arm: str, total: int, replaces: int) -> None:
        """A phase of one arm begins (or resumes) with ``total`` trials, where the study total counted ``replaces``
        (a confirmation phase is counted at its upper bound until its sources are known)."""
        self._count(phase, arm, total, replaces)
        set_phase(self.study_dir, phase, arm, PHASE_RUNNING)
        state = self.phases[phase, arm] = self._from_files(phase, arm, total)
        resumed = f", {state.done} already done" if state.done else ""
        if total:  # a phase with nothing to run (an ablation option like its centre) says why elsewhere
            self._print(f"{phase} {arm}: {total} trials, {self.spec.max_concurrent} at a time{resumed}")

    def end_phase(self, phase: str, arm: str) -> None:
        """Every trial of a phase of one arm has ended."""
        set_phase(self.study_dir, phase, arm, PHASE_DONE)

    def notice(self, line: str) -> None:
        """Print one line about the study (e.g. an arm with nothing to confirm)."""
        self._print(line)

    def trial_finished(self, name: str, place: tuple[str, str], result: dict[str, Any] | None, failed: bool) -> None:
        """A trial of ``place`` = (phase, arm) ended; ``result`` is its last record (None when it reported none)."""
        if (*place, name) in self.counted:
            return
        self.counted.add((*place, name))
        self.done_now += 1
        phase, arm = place
        if place not in self.phases:  # a phase started in an earlier session; this trial is counted below
            total = self.places.bound(next(p for p in self.places.places() if p.key == place))
            self.phases[place] = self._from_files(phase, arm, total, besides=name)
        state = self.phases[place]
        state.done += 1
        metric = self.spec.selection.metric
        full = result and result.get("epoch") == self.spec.epochs  # not stopped early by ASHA
        if full and not failed and result.get("status") == OK and is_feasible(self.spec, result):
            if state.best is None or selection_value(self.spec, result) > selection_value(self.spec, state.best):
                state.best = result
        best = f"best {metric} {state.best[metric]:.4f}" if state.best is not None else "no feasible trial yet"
        note = " (failed)" if failed else ""
        self._print(f"{phase} {arm}: {state.done}/{state.total} trials{note} · {best} · {self._times()}")

    def _from_files(self, phase: str, arm: str, total: int, besides: str | None = None) -> _Phase:
        """A phase's progress as its trial files show it: trials finished (other than ``besides``), the best."""
        trials = read_trials(self.study_dir / phase / arm)
        best = best_trial(self.spec, trials)
        done = sum(t.status in FINISHED and t.trial_id != besides for t in trials)
        return _Phase(total, done, best and best.last)

    def _times(self) -> str:
        elapsed = time.monotonic() - self.start
        done = len(self.counted)
        text = f"study {done}/{self.total} · {format_duration(elapsed)} elapsed"
        if self.done_now:
            left = max(self.total - done, 0) * elapsed / self.done_now
            text += f" · ~{format_duration(left)} left"
        return text

    def _print(self, line: str) -> None:
        print(line, file=self.out, flush=True)


_LIVE: StudyProgress | None = None


def live_progress() -> StudyProgress | None:
    """The installed tracker (None outside a running study, e.g. in a worker)."""
    return _LIVE


def install(progress: StudyProgress | None) -> None:
    """Make ``progress`` the tracker that every :class:`ProgressCallback` (restored copies too) reports to."""
    global _LIVE
    _LIVE = progress


class ProgressCallback(tune.Callback):
    """Tune callback forwarding trial ends to the installed :class:`StudyProgress`."""

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if _LIVE is not None:
            _LIVE.trial_finished(trial_name(trial.config), trial_place(trial.config), trial.last_result, failed=False)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if _LIVE is not None:
            _LIVE.trial_finished(trial_name(trial.config), trial_place(trial.config), trial.last_result, failed=True)
