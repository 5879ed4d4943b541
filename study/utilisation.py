"""Slot utilisation of a study: how many of its ``max_concurrent`` slots its trials kept busy, and how many trials
ran at once over time. ``study status`` shows it for a running study (from the trial files) and the report's Cost
section for a finished one (from ``trials.parquet``), so that a study that runs one trial at a time by accident is
seen while it runs.

A trial is its start, its wall time and its sessions (:class:`TrialTime`). The start is when its ``config.yaml``
was written — the trainable writes it whenever a session starts, so it dates the trial's *last* session
(``started_at`` in the trials table); the wall time is ``trial.json``'s ``wall_time_s``, every session summed; the
sessions are its ``nodes`` entries (one per session, each with its start time). A trial of one session ran over [start - setup, start - setup
+ wall], its setup the part of its wall time before its start was written (:func:`setup_seconds`: its wall time
less its epochs' time). A trial of several (a PBT member pauses at every perturbation epoch; a restarted trial) is
placed in time by its last session only, taken as its wall time / sessions from its start; its earlier sessions
count in the busy time and in the span (from its first session's recorded start; in files that lack it, from a
bound: they ran before its last start), but not in the count of trials at once.

- utilisation = the busy time (the trials' wall time summed) / (the span x the slots), the span running from the
  first start to the last end, less the idle gaps longer than :data:`IDLE_GAP_S` (no trial ran: the study was not
  running, between an interrupt and its resume);
- trials at once on average = the busy time / the span (= utilisation x slots); the most at once (for
  :data:`PEAK_MIN_S` at least), and the share of the span with each count (from the placed intervals).

Plain Python (``study`` never imports pandas); ``analysis.utilisation`` applies it to the trials table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

# An idle gap longer than this (no trial running) is taken for a study that was not running (interrupted, then
# resumed later) and left out of the span. A running study's driver starts the next trial within seconds.
IDLE_GAP_S = 600.0
# The most trials at once counts a number of trials running for at least this long in all: a trial's start is
# dated by a file's mtime and its setup estimated, so back-to-back trials may seem to overlap by a few tens of ms.
PEAK_MIN_S = 1.0


class TrialTime(NamedTuple):
    """One trial's time: its (last session's) start, its wall time over every session, its sessions, its last
    session's length where known (a trial training now: until now; else its wall time / sessions), the
    seconds its session ran before its start was written (:func:`setup_seconds`), and when its first session
    started where recorded (``trial.json``'s ``nodes``)."""

    start: float
    wall_s: float
    sessions: int = 1
    last_s: float | None = None
    setup_s: float = 0.0
    first_start: float | None = None

    def _last(self) -> float:
        return self.wall_s / max(self.sessions, 1) if self.last_s is None else min(self.last_s, self.wall_s)

    def placed(self) -> tuple[float, float]:
        """The interval it is counted running over: its last session (its whole run when it had one)."""
        begin = self.start - self.setup_s
        return begin, begin + self._last()

    def earliest(self) -> float:
        """When it started at the latest: its first session's recorded start; else a bound, its earlier sessions
        having run before its last one started. (A PBT member's sessions interleave with the other members':
        its first one started long before its wall time says.)"""
        bound = self.placed()[0] - (self.wall_s - self._last())
        return bound if self.first_start is None else min(bound, self.first_start)


def setup_seconds(wall_s: float, sessions: int, epoch_seconds: float) -> float:
    """How long a trial of one session ran before its ``config.yaml`` (its start) was written: the trainable
    builds the model and data first, and its wall time counts from before that. Its wall time less the time its
    epochs took (``epoch_time_s`` + ``eval_time_s`` of its records, summed: ``epoch_seconds``); 0 for a trial of
    several sessions (its records are not all its last session's)."""
    return min(max(wall_s - epoch_seconds, 0.0), wall_s) if sessions <= 1 and epoch_seconds > 0 else 0.0


def epoch_seconds(records: list[dict]) -> float:
    """The time a trial's records took: ``epoch_time_s`` + ``eval_time_s`` summed."""
    return sum(float(r.get(key) or 0.0) for r in records for key in ("epoch_time_s", "eval_time_s")
               if isinstance(r.get(key), (int, float)))


@dataclass(frozen=True)
class Utilisation:
    """How a study's trials used its slots (see the module docstring)."""

    slots: int
    trials: int
    busy_s: float  # the trials' wall time summed
    span_s: float  # first start to last end, less the idle gaps left out
    gaps_s: float  # the idle gaps left out of the span
    peak: int  # the most trials at once
    at_once_s: dict[int, float] = field(default_factory=dict)  # k -> seconds of the span with k trials running
    sessions: int = 0  # trials of several sessions, placed in time by their last one only

    @property
    def utilisation(self) -> float:
        return self.busy_s / (self.span_s * self.slots) if self.span_s > 0 and self.slots > 0 else float("nan")

    @property
    def mean_at_once(self) -> float:
        return self.busy_s / self.span_s if self.span_s > 0 else float("nan")

    @property
    def serial(self) -> bool:
        """No two trials overlapped although the spec allows several at once (over more trials than slots)."""
        return self.slots > 1 and self.trials > self.slots and self.peak <= 1


def _ran(trials: list[TrialTime]) -> list[TrialTime]:
    return [TrialTime(float(t.start), float(t.wall_s), int(t.sessions or 1), t.last_s, float(t.setup_s),
                      None if t.first_start is None or t.first_start != t.first_start else float(t.first_start))
            for t in trials if t.wall_s > 0]


def running_steps(intervals: list[tuple[float, float]]) -> list[tuple[float, int]]:
    """The number of trials running as a step function: (time, count from then on), in time order; a trial's end
    is counted before another's start at the same instant."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals],
                    key=lambda e: (e[0], e[1]))
    steps: list[tuple[float, int]] = []
    running = 0
    for time, change in events:
        running += change
        if steps and steps[-1][0] == time:
            steps[-1] = (time, running)
        else:
            steps.append((time, running))
    return steps


def trial_steps(trials: list[TrialTime]) -> list[tuple[float, int]]:
    """:func:`running_steps` of the trials' placed intervals, from the earliest a trial can have started (a step
    to 0 there when a trial of several sessions started before every placed interval)."""
    trials = _ran(trials)
    steps = running_steps([t.placed() for t in trials])
    if steps and (first := min(t.earliest() for t in trials)) < steps[0][0]:
        steps.insert(0, (first, 0))
    return steps


def utilisation(trials: list[TrialTime], slots: int, idle_gap_s: float = IDLE_GAP_S,
                until: float | None = None) -> Utilisation | None:
    """The utilisation of ``slots`` by ``trials``, the span reaching ``until`` at least (a running study: now);
    None without a trial that ran for a positive time."""
    trials = _ran(trials)
    if not trials:
        return None
    steps = trial_steps(trials)
    if until is not None and until > steps[-1][0]:
        steps.append((float(until), 0))
    at_once: dict[int, float] = {}
    gaps = 0.0
    for (time, running), (after, _) in zip(steps, steps[1:]):
        length = after - time
        if running == 0 and length > idle_gap_s:
            gaps += length
            continue
        at_once[running] = at_once.get(running, 0.0) + length
    return Utilisation(slots=slots, trials=len(trials), busy_s=sum(t.wall_s for t in trials),
                       span_s=steps[-1][0] - steps[0][0] - gaps, gaps_s=gaps, peak=_peak(at_once),
                       at_once_s=dict(sorted(at_once.items())), sessions=sum(t.sessions > 1 for t in trials))


def _peak(at_once: dict[int, float]) -> int:
    """The most trials at once for :data:`PEAK_MIN_S` in all (the most at all when none lasted that long)."""
    lasting = [k for k, seconds in at_once.items() if seconds >= PEAK_MIN_S]
    return max(lasting or at_once or [0])


def windows(trials: list[TrialTime], count: int) -> list[tuple[float, float, float, int]]:
    """The span from the first start to the last end cut into ``count`` equal windows: (from, to) in seconds after
    the first start, the mean number of trials running in the window (placed intervals), and the most at once
    (for :data:`PEAK_MIN_S` in the window)."""
    steps = trial_steps(trials)
    if not steps or count < 1:
        return []
    first, last = steps[0][0], steps[-1][0]
    width = (last - first) / count
    out = []
    for index in range(count):
        low, high = first + index * width, first + (index + 1) * width if index < count - 1 else last
        at_once: dict[int, float] = {}
        for (time, running), (after, _) in zip(steps, steps[1:]):
            overlap = min(after, high) - max(time, low)
            if overlap > 0:
                at_once[running] = at_once.get(running, 0.0) + overlap
        busy = sum(k * seconds for k, seconds in at_once.items())
        out.append((low - first, high - first, busy / (high - low) if high > low else float("nan"), _peak(at_once)))
    return out


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def _share(fraction: float) -> str:
    return "<1%" if 0 < fraction < 0.005 else f"{fraction:.0%}"


def utilisation_text(used: Utilisation) -> str:
    """One sentence: utilisation, trials at once on average and at most, the share of the span at each count."""
    shares = ", ".join(f"{k}: {_share(used.at_once_s[k] / used.span_s)}" for k in sorted(used.at_once_s, reverse=True)
                       if used.span_s > 0)
    gaps = (f"; the span leaves out {_duration(used.gaps_s)} with no trial running, taken for the study not running"
            if used.gaps_s else "")
    text = (f"slot utilisation {used.utilisation:.0%} ({_duration(used.busy_s)} of trial wall time / "
            f"({_duration(used.span_s)} span x {used.slots} slot(s), max_concurrent){gaps}); "
            f"{used.mean_at_once:.2f} trial(s) at once on average, at most {used.peak}; share of the span with k "
            f"trials at once: {shares}")
    if used.sessions:
        text += f" ({used.sessions} trial(s) of several sessions counted at once in their last session only)"
    if used.serial:
        text += f". No two of its {used.trials} trials ran at once although max_concurrent is {used.slots}"
    return text
