"""Terminal progress of a study: one line when a phase starts and one when a trial ends — which arm, trials
done / total, the best feasible selection value so far, elapsed and estimated time left.

Trials print nothing themselves (Ray's logs stay small). Tune pickles the callbacks of an experiment and hands
back copies on ``Tuner.restore``, so :class:`ProgressCallback` holds no state: it forwards to the driver's live
:class:`StudyProgress`, which the runner installs with :func:`install`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, TextIO

from ray import tune

from .objectives import is_feasible, selection_value
from .spec import StudySpec
from .state import PHASE_DONE, best_trial, read_state
from .trialdir import CONFIRM, FINISHED, OK, SEARCH, read_trials


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


class StudyProgress:
    """Counts finished trials over the whole study and prints progress lines."""

    def __init__(self, spec: StudySpec, study_dir: Path, out: TextIO = sys.stdout) -> None:
        self.spec, self.study_dir, self.out = spec, study_dir, out
        self.start = time.monotonic()
        self.total = spec.total_trials()
        self.counted: set[str] = set()  # trial ids already finished (also those of an earlier session)
        self.done_now = 0
        self.phase = self.arm = ""
        self.phase_total = self.phase_done = 0
        self.best: dict[str, Any] | None = None  # final record of the best feasible trial of the phase
        confirm_done = read_state(study_dir)["phases"][CONFIRM]
        bound = spec.confirm.top_k * len(spec.confirm.seeds)
        for phase in (SEARCH, CONFIRM):
            for arm in spec.arms:
                trials = read_trials(study_dir / phase / arm)
                self.counted.update(t.trial_id for t in trials if t.status in FINISHED)
                if phase == CONFIRM and confirm_done.get(arm) == PHASE_DONE:
                    self.total += len(trials) - bound

    def start_phase(self, phase: str, arm: str, total: int, replaces: int) -> None:
        """A phase of one arm begins (or resumes) with ``total`` trials, where the study total counted ``replaces``
        (a confirmation phase is counted at its upper bound until its sources are known)."""
        self.total += total - replaces
        self.phase, self.arm, self.phase_total = phase, arm, total
        trials = read_trials(self.study_dir / phase / arm)
        self.phase_done = sum(t.status in FINISHED for t in trials)
        best = best_trial(self.spec, trials)
        self.best = best.last if best else None
        resumed = f", {self.phase_done} already done" if self.phase_done else ""
        self._print(f"{phase} {arm}: {total} trials, {self.spec.max_concurrent} at a time{resumed}")

    def trial_finished(self, trial_id: str, result: dict[str, Any] | None, failed: bool) -> None:
        if trial_id in self.counted:
            return
        self.counted.add(trial_id)
        self.done_now += 1
        self.phase_done += 1
        metric = self.spec.selection.metric
        full = result and result.get("epoch") == self.spec.epochs  # not stopped early by ASHA
        if full and not failed and result.get("status") == OK and is_feasible(self.spec, result):
            if self.best is None or selection_value(self.spec, result) > selection_value(self.spec, self.best):
                self.best = result
        best = f"best {metric} {self.best[metric]:.4f}" if self.best is not None else "no feasible trial yet"
        note = " (failed)" if failed else ""
        done = f"{self.phase_done}/{self.phase_total} trials{note}"
        self._print(f"{self.phase} {self.arm}: {done} · {best} · {self._times()}")

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


def install(progress: StudyProgress | None) -> None:
    """Make ``progress`` the tracker that every :class:`ProgressCallback` (restored copies too) reports to."""
    global _LIVE
    _LIVE = progress


class ProgressCallback(tune.Callback):
    """Tune callback forwarding trial ends to the installed :class:`StudyProgress`."""

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if _LIVE is not None:
            _LIVE.trial_finished(trial.trial_id, trial.last_result, failed=False)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if _LIVE is not None:
            _LIVE.trial_finished(trial.trial_id, trial.last_result, failed=True)
