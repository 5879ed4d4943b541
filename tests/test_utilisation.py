"""Slot utilisation (study/utilisation.py, analysis/utilisation.py): the trials' wall time over the span x the
slots, and how many ran at once, on hand-made trials; ``study status`` and the report say the same of the tiny
study built without Ray."""

from __future__ import annotations

import math
import time

import pandas as pd
import pytest

from analysis import utilisation as analysis_utilisation
from analysis.load import build_tables
from study import status
from study.status import status_lines
from study.trialdir import read_metrics, read_trials
from study.utilisation import (
    IDLE_GAP_S,
    TrialTime,
    epoch_seconds,
    setup_seconds,
    utilisation,
    utilisation_text,
    windows,
)
from study_fixture import copy_study


def test_two_trials_overlapping_fully_on_two_slots_use_them_all():
    used = utilisation([TrialTime(100.0, 10.0), TrialTime(100.0, 10.0)], slots=2)
    assert used.utilisation == 1.0 and used.mean_at_once == 2.0 and used.peak == 2
    assert used.at_once_s == {2: 10.0} and not used.serial


def test_serial_trials_on_two_slots_use_half():
    used = utilisation([TrialTime(0.0, 10.0), TrialTime(10.0, 10.0), TrialTime(20.0, 10.0)], slots=2)
    assert used.utilisation == 0.5 and used.mean_at_once == 1.0 and used.peak == 1 and used.serial
    assert "No two of its 3 trials ran at once although max_concurrent is 2" in utilisation_text(used)
    # on one slot the same trials are not serial by accident
    assert not utilisation([TrialTime(0.0, 10.0), TrialTime(10.0, 10.0)], slots=1).serial


def test_a_gap_with_no_trial_counts_unless_the_study_was_not_running():
    short = utilisation([TrialTime(0.0, 10.0), TrialTime(30.0, 10.0)], slots=1)
    assert short.span_s == 40.0 and short.utilisation == 0.5 and short.at_once_s == {0: 20.0, 1: 20.0}
    resumed = utilisation([TrialTime(0.0, 10.0), TrialTime(10.0 + IDLE_GAP_S + 1, 10.0)], slots=1)
    assert resumed.span_s == 20.0 and resumed.gaps_s == IDLE_GAP_S + 1 and resumed.utilisation == 1.0
    assert "leaves out" in utilisation_text(resumed)


def test_a_trial_of_several_sessions_is_placed_by_its_last_one():
    """A PBT member's start is its last session's: its other sessions ran before, counted busy, not placed."""
    member = TrialTime(100.0, 30.0, sessions=3)
    assert member.placed() == (100.0, 110.0) and member.earliest() == 80.0
    used = utilisation([member, TrialTime(80.0, 30.0)], slots=2)
    assert used.span_s == 30.0 and used.busy_s == 60.0 and used.utilisation == 1.0
    assert used.peak == 2 and used.sessions == 1
    assert utilisation([TrialTime(0.0, 0.0)], slots=2) is None  # nothing ran


def test_a_member_whose_first_session_is_recorded_spans_from_it():
    """Six PBT members on 2 slots: each 5 sessions of 4 s, interleaved over 60 s; every last session starts in
    the last 12 s. From the last starts alone the span would be 12 + 16 s and the busy time (120 s) over 2 slots
    more than 100%; from the first sessions' recorded starts it is 60 s: 100%."""
    members = [TrialTime(48.0 + 4.0 * (m // 2), 20.0, sessions=5, first_start=4.0 * (m // 2)) for m in range(6)]
    assert members[0].earliest() == 0.0 and members[5].earliest() == 8.0
    used = utilisation(members, slots=2)
    assert used.busy_s == 120.0 and used.span_s == 60.0 and used.utilisation == 1.0
    unrecorded = utilisation([m._replace(first_start=None) for m in members], slots=2)
    assert unrecorded.utilisation > 1.0  # the defect the recorded start removes


def test_the_setup_before_the_start_was_written_moves_the_trial_earlier():
    """A trial's start is written after its model and data are built; its wall time counts from before."""
    records = [{"epoch_time_s": 3.0, "eval_time_s": 1.0}, {"epoch_time_s": 3.0, "eval_time_s": None}]
    assert epoch_seconds(records) == 7.0 and setup_seconds(10.0, 1, 7.0) == 3.0
    assert setup_seconds(10.0, 2, 7.0) == 0.0 and setup_seconds(10.0, 1, 0.0) == 0.0  # unknown: none
    back_to_back = [TrialTime(103.0, 10.0, setup_s=3.0), TrialTime(113.0, 10.0, setup_s=3.0)]
    assert [t.placed() for t in back_to_back] == [(100.0, 110.0), (110.0, 120.0)]
    assert utilisation(back_to_back, slots=1).utilisation == 1.0
    noisy = utilisation([TrialTime(0.0, 10.05), TrialTime(10.0, 10.0)], slots=2)  # 50 ms of seeming overlap
    assert noisy.peak == 1 and noisy.serial is False and noisy.at_once_s[2] == pytest.approx(0.05)


def test_windows_and_until():
    trials = [TrialTime(0.0, 10.0), TrialTime(0.0, 5.0), TrialTime(10.0, 10.0)]
    assert windows(trials, 4) == [(0.0, 5.0, 2.0, 2), (5.0, 10.0, 1.0, 1), (10.0, 15.0, 1.0, 1), (15.0, 20.0, 1.0, 1)]
    live = utilisation(trials, slots=2, until=40.0)  # a driver still running: the span reaches now
    assert live.span_s == 40.0 and live.at_once_s[0] == 20.0


def _frame(rows):
    return pd.DataFrame(rows, columns=["phase", "started_at", "wall_time_s", "nodes"])


def test_the_trials_table_gives_the_same(monkeypatch):
    trials = _frame([("search", 1000.0, 10.0, "n1"), ("search", 1000.0, 10.0, "n1"),
                     ("confirm", 1010.0, 10.0, None), ("confirm", 1020.0, 0.0, None)])  # the last never ran
    times = analysis_utilisation.trial_times(trials)
    assert len(times) == 3 and list(times["sessions"]) == [1, 1, 1]
    used = analysis_utilisation.utilisation(analysis_utilisation._times(times), 2)
    assert used.utilisation == pytest.approx(0.75) and used.peak == 2
    member = analysis_utilisation.trial_times(_frame([("search", 100.0, 30.0, "a,a,b")]))
    assert member.iloc[0][["sessions", "placed_start", "placed_end"]].tolist() == [3, 100.0, 110.0]


@pytest.fixture(scope="module")
def tiny(direct_study, tmp_path_factory):
    return copy_study(direct_study, tmp_path_factory.mktemp("utilisation"))


def test_status_and_the_report_agree_on_the_tiny_study(tiny):
    """The tiny study (built in-process, one trial at a time): ``study status`` reads its trial files, the
    analysis its trials table; both give the same utilisation, near 50% of its 2 slots."""
    tables = build_tables(tiny)
    used = analysis_utilisation.study_utilisation(tables)
    assert used is not None and used.slots == tables.spec.max_concurrent == 2
    assert used.trials == int((tables.trials["wall_time_s"] > 0).sum())
    assert used.peak == 1 and used.serial and 0.3 < used.utilisation <= 0.5 + 1e-9  # built serially
    line = next(line for line in status_lines(tiny) if "slot utilisation" in line)
    assert line == utilisation_text(used), line
    table = analysis_utilisation.concurrency_table(tables)
    assert len(table) == analysis_utilisation.WINDOWS and (table["max_running"] <= 1).all()
    assert math.isclose((table["mean_running"] * (table["to_s"] - table["from_s"])).sum(), used.busy_s, rel_tol=1e-6)
    assert set(",".join(table["phases"]).split(",")) <= set(tables.trials["phase"])
    text = analysis_utilisation.utilisation_lines(tables)
    assert text.startswith(f"Slot utilisation {used.utilisation:.0%} (")
    row = analysis_utilisation.utilisation_table(tables).iloc[0]  # the sentence's numbers, as the README links them
    assert row["utilisation"] == used.utilisation and row["slots"] == 2 and row["max_at_once"] == 1
    serial = sum(s for k, s in used.at_once_s.items() if k <= 1) / used.span_s
    # One trial at a time, built serially. A trial is placed from wall - epochs before its start, so its writes after
    # its last epoch count as setup and it overlaps the one before by them: 9 ms at most between the 15 trials on an
    # idle machine, 1.6% of the span seen once with the suite's other worker and a sampler busy.
    assert math.isclose(row["share_serial"], serial) and serial > 0.95
    assert math.isclose(row["busy_s"] / (row["span_s"] * row["slots"]), used.utilisation)


def test_a_trial_in_training_counts_until_now(tiny):
    """``study status`` of a study whose trial trains now: that trial runs until now, and so does the span."""
    trial = read_trials(tiny / "search" / "fixed")[0]
    start, wall = (trial.dir / "config.yaml").stat().st_mtime, trial.info.wall_time_s
    setup = setup_seconds(wall, 1, epoch_seconds(read_metrics(trial.dir)))  # before config.yaml was written
    assert 0 < setup < wall
    ended = status._utilisation(2, [trial], set(), live=False)
    assert ended.busy_s == wall and ended.span_s == pytest.approx(wall)
    running = status._utilisation(2, [trial], {trial.dir}, live=True)
    since = time.time() - start + setup
    assert running.span_s == pytest.approx(since, abs=2) and running.busy_s == pytest.approx(since, abs=2)
