"""The report's slot utilisation (Cost section): how many of the spec's ``max_concurrent`` slots the study's trials
kept busy, and how many ran at once over time, from each trial's ``started_at``, ``wall_time_s`` and ``nodes`` (its
sessions) in the trials table (the definitions: ``study.utilisation``, which ``study status`` uses on a running
study's trial files).

``tables/concurrency.csv``: the study's span cut into :data:`WINDOWS` equal windows — seconds after the first
start, the mean number of trials running (and the utilisation of the slots) in each window, the most at once,
and the phases whose trials ran in it; ``plots/concurrency.png`` (``analysis.plots``) draws the count over time.
"""

from __future__ import annotations

import pandas as pd

from study.utilisation import (
    TrialTime,
    Utilisation,
    setup_seconds,
    trial_steps,
    utilisation,
    utilisation_text,
    windows,
)

from .load import StudyTables

WINDOWS = 10
COLUMNS = ["from_s", "to_s", "mean_running", "utilisation", "max_running", "phases"]


def trial_times(trials: pd.DataFrame, epochs: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per trial that ran: its phase, ``start`` (``started_at``: its last session's), ``wall_s``
    (``wall_time_s``), ``sessions`` (its entries in ``nodes``; 1 where not recorded), ``first_start`` (its first
    session's start, ``first_session_at``; NaN where not recorded), and the interval it is
    ``setup_s`` (the time before its start was written, from its records in ``epochs``, when given:
    ``study.utilisation.setup_seconds``) and the interval it is counted running over
    (``study.utilisation.TrialTime.placed``: ``placed_start``, ``placed_end``)."""
    columns = ["phase", "start", "wall_s", "sessions", "setup_s", "first_start", "placed_start", "placed_end"]
    if trials.empty or "started_at" not in trials or "wall_time_s" not in trials:
        return pd.DataFrame(columns=columns)
    nodes = trials["nodes"] if "nodes" in trials else pd.Series(None, index=trials.index, dtype=object)
    frame = pd.DataFrame({"phase": trials["phase"], "start": trials["started_at"].astype(float),
                          "wall_s": trials["wall_time_s"].astype(float).fillna(0.0),
                          "sessions": nodes.map(lambda v: len(v.split(",")) if isinstance(v, str) and v else 1),
                          "first_start": (trials["first_session_at"].astype(float) if "first_session_at" in trials
                                          else pd.Series(float("nan"), index=trials.index))})
    spent = _epoch_seconds(trials, epochs)
    frame["setup_s"] = [setup_seconds(wall, sessions, seconds)
                        for wall, sessions, seconds in zip(frame["wall_s"], frame["sessions"], spent)]
    frame = frame[frame["wall_s"] > 0].sort_values("start").reset_index(drop=True)
    placed = [t.placed() for t in _times(frame)]
    frame["placed_start"] = [p[0] for p in placed]
    frame["placed_end"] = [p[1] for p in placed]
    return frame[columns]


def _epoch_seconds(trials: pd.DataFrame, epochs: pd.DataFrame | None) -> list[float]:
    """Per trial (in the order of ``trials``): the time its records took (``study.utilisation.epoch_seconds``)."""
    columns = [c for c in ("epoch_time_s", "eval_time_s") if epochs is not None and c in epochs]
    if not columns or epochs.empty:
        return [0.0] * len(trials)
    spent = epochs[columns].apply(pd.to_numeric, errors="coerce").fillna(0.0).sum(axis=1)
    by_trial = spent.groupby([epochs["arm"], epochs["phase"], epochs["trial_id"]]).sum()
    keys = zip(trials["arm"], trials["phase"], trials["trial_id"])
    return [float(by_trial.get(key, 0.0)) for key in keys]


def _times(frame: pd.DataFrame) -> list[TrialTime]:
    columns = zip(frame["start"], frame["wall_s"], frame["sessions"], frame["setup_s"], frame["first_start"])
    return [TrialTime(start, wall, sessions, None, setup, first) for start, wall, sessions, setup, first in columns]


def study_utilisation(tables: StudyTables) -> Utilisation | None:
    """The utilisation of the study's slots by its trials (None when no trial ran)."""
    return utilisation(_times(trial_times(tables.trials, tables.epochs)), tables.spec.max_concurrent)


UTILISATION_COLUMNS = ["slots", "trials", "busy_s", "span_s", "gaps_s", "utilisation", "mean_at_once", "max_at_once",
                       "share_serial"]


def utilisation_table(tables: StudyTables) -> pd.DataFrame:
    """One row, the sentence of :func:`utilisation_lines` as numbers: the slots (``max_concurrent``), the trials
    that ran, their wall time summed (``busy_s``), the span and the idle gaps left out of it, the utilisation
    (busy / (span x slots)), trials at once on average and at most, and the share of the span with at most one
    trial running (``share_serial``)."""
    used = study_utilisation(tables)
    if used is None:
        return pd.DataFrame(columns=UTILISATION_COLUMNS)
    serial = sum(s for k, s in used.at_once_s.items() if k <= 1) / used.span_s if used.span_s > 0 else float("nan")
    return pd.DataFrame([[used.slots, used.trials, used.busy_s, used.span_s, used.gaps_s, used.utilisation,
                          used.mean_at_once, used.peak, serial]], columns=UTILISATION_COLUMNS)


def concurrency_table(tables: StudyTables) -> pd.DataFrame:
    """The span in :data:`WINDOWS` windows: mean and most trials running, utilisation, phases that ran."""
    return concurrency_windows(tables, WINDOWS)


def concurrency_windows(tables: StudyTables, count: int) -> pd.DataFrame:
    """The span in ``count`` equal windows (seconds after the first start): mean and most trials running (their
    placed intervals), the utilisation of the slots, the phases whose trials ran in the window."""
    frame = trial_times(tables.trials, tables.epochs)
    if frame.empty:
        return pd.DataFrame(columns=COLUMNS)
    first = trial_steps(_times(frame))[0][0]
    rows = []
    for low, high, mean, peak in windows(_times(frame), count):
        ran = frame[(frame["placed_start"] - first < high) & (frame["placed_end"] - first > low)]
        rows.append({"from_s": low, "to_s": high, "mean_running": mean,
                     "utilisation": mean / tables.spec.max_concurrent, "max_running": peak,
                     "phases": ",".join(dict.fromkeys(ran["phase"]))})
    return pd.DataFrame(rows, columns=COLUMNS)


def utilisation_lines(tables: StudyTables) -> str:
    """The Cost section's paragraph on the slots: the utilisation sentence and how to read it."""
    used = study_utilisation(tables)
    if used is None:
        return "Slot utilisation: no trial has run.\n"
    text = utilisation_text(used)
    return (f"{text[0].upper()}{text[1:]}. A trial counts from its start (`started_at`, its last session's) for its "
            "wall time (`wall_time_s`, every session); a trial of several sessions (`nodes`: a PBT member pauses at "
            "each perturbation epoch) is placed in time by its last session only. The driver's own time between "
            "trials and Ray's start-up of each trial are not trial time: even a study that kept every slot filled "
            "stays below 100%.\n")
