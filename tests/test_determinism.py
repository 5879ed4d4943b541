"""A study is deterministic at any load: the same spec run on an idle machine, beside CPU-bound processes, and
killed mid-search then resumed gives the same trials (configurations, rung decisions, picks, every number of every
record) and the same Conclusions. Only what a session is by design differs: its timings, and which Ray trial and
node ran it.

The spec searches in batches of 2 with early stopping (``study.phases.search``); its ``lr`` arm has a diverging
trial.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from study_kill import finished_trials, in_flight_trials, kill, poll_until, start_diffctl, unknown_trials
from tiny_specs import TINY, run_diffctl, spec_variant, write_spec

pytestmark = pytest.mark.slow
SPEC = spec_variant(name="det", epochs=3, search_batch=2, asha={"grace_period": 1, "reduction_factor": 2},
                    arms={"fixed": {**TINY["arms"]["fixed"], "budget": 4}, "lr": TINY["arms"]["lr"]})
# What differs between two runs of the same spec by design: how long things took, and the session (which Ray
# trial and node ran a trial, how many sessions it took).
SESSION_COLUMNS = {"wall_time_s", "started_at", "first_session_at", "nodes", "hosts", "first_node", "node_changes", "ray_trial_id",
                   "restarts", "restarted", "final_epoch_time_s", "final_eval_time_s"}
# A CPU-bound process at the lowest priority: the study's trials still meet busy cores (their timing changes), but
# at full priority two of them starve Ray's own processes on 2 cores and the study takes ~15x longer.
BURNER = "import os\nos.nice(19)\nwhile True: pass"


def _run(root: Path) -> Path:
    done = run_diffctl("study", "run", str(write_spec(root, SPEC)), "--storage", str(root / "results"), timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return root / "results" / SPEC["name"]


@pytest.fixture(scope="module")
def quiet(tmp_path_factory) -> Path:
    return _run(tmp_path_factory.mktemp("quiet"))


@pytest.fixture(scope="module")
def loaded(tmp_path_factory) -> Path:
    burners = [subprocess.Popen([sys.executable, "-c", BURNER]) for _ in range(2)]  # as many as the cores
    try:
        return _run(tmp_path_factory.mktemp("loaded"))
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


@pytest.fixture(scope="module")
def resumed(tmp_path_factory) -> tuple[Path, bool]:
    """Killed (driver, Ray and workers) once a search trial has finished and another is between epochs, then
    resumed to the end: (the study, whether the kill came in that window)."""
    root = tmp_path_factory.mktemp("killed")
    study_dir = root / "results" / SPEC["name"]
    driver = start_diffctl("study", "run", str(write_spec(root, SPEC)), "--storage", str(root / "results"))
    try:
        # a trial after its first epoch of three: the kill comes before it can finish
        hit = poll_until(driver, lambda: bool(finished_trials(study_dir)) and not unknown_trials(study_dir) and any(
            text.count("\n") == 1 for text in in_flight_trials(study_dir).values()))
    finally:
        kill(driver)
    done = run_diffctl("study", "resume", str(study_dir), timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return study_dir, hit


def _trials(study_dir: Path) -> pd.DataFrame:
    trials = pd.read_parquet(study_dir / "trials.parquet")
    trials["info_json"] = [json.dumps({k: v for k, v in json.loads(text).items() if k not in SESSION_COLUMNS},
                                      sort_keys=True) for text in trials["info_json"]]  # trial.json, sessions aside
    keep = [c for c in trials.columns if c not in SESSION_COLUMNS]
    return trials[keep].sort_values(["phase", "arm", "trial_id"]).reset_index(drop=True)


def _differing(a: pd.DataFrame, b: pd.DataFrame) -> list[str]:
    assert list(a.columns) == list(b.columns) and len(a) == len(b)
    differing = []
    for column in a.columns:
        x, y = a[column].to_numpy(), b[column].to_numpy()
        if x.dtype.kind in "fiub" and y.dtype.kind in "fiub":
            same = np.array_equal(x.astype(float), y.astype(float), equal_nan=True)
        else:
            same = [None if v is None or v != v else v for v in x] == [None if v is None or v != v else v for v in y]
        if not same:
            differing.append(column)
    return differing


def _conclusions(study_dir: Path) -> str:
    report = (study_dir / "report.md").read_text()
    return report[report.index("## Conclusions"):report.index("## Cost")]


def test_the_same_spec_gives_the_same_study_on_a_busy_machine(quiet, loaded):
    stopped = _trials(quiet)["status"].eq("stopped").sum()
    assert stopped >= 1  # a rung decision was taken (and taken alike)
    assert _differing(_trials(quiet), _trials(loaded)) == []
    assert _conclusions(quiet) == _conclusions(loaded)


def test_the_same_spec_gives_the_same_study_after_a_kill_and_resume(quiet, resumed):
    study_dir, hit = resumed
    assert hit, "the study finished its search before the kill"
    assert _differing(_trials(quiet), _trials(study_dir)) == []
    assert _conclusions(quiet) == _conclusions(study_dir)
    assert pd.read_parquet(study_dir / "trials.parquet")["restarted"].any()  # a trial did continue after the kill
