"""Killing and watching a ``diffctl`` command run in a subprocess, for the tests that SIGKILL a study and resume
it (test_study, test_kill_anywhere).

A command is started in a session of its own (:func:`start_diffctl`), so that :func:`kill_session` reaches the
driver, the local Ray it started and Ray's workers, which live in process groups of their own and would
otherwise finish their epoch after the driver died. The trial snapshots (:func:`finished_trials`,
:func:`in_flight_trials`) are what a kill must leave untouched.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, NamedTuple

from study.runner import EXPERIMENT
from tiny_specs import DIFFCTL, diffctl_env, run_diffctl, write_spec

POLL_S = 0.02  # a trial's epoch lasts ~1 s on 2 cores: a window of one epoch is seen many times over


def start_diffctl(*args: str, env: dict[str, str] | None = None, log: Path | None = None) -> subprocess.Popen:
    """Start ``diffctl ARGS`` in a new session (its output to ``log``, else discarded)."""
    out = open(log, "ab") if log is not None else subprocess.DEVNULL
    try:
        return subprocess.Popen(
            [DIFFCTL, *args], start_new_session=True, env=env or diffctl_env(), stdout=out, stderr=subprocess.STDOUT
        )
    finally:
        if log is not None:
            out.close()


def poll_until(process: subprocess.Popen, condition: Callable[[], bool], timeout: float = 300) -> bool:
    """Wait until ``condition()`` holds while ``process`` still runs; False when it exited (or time ran out)
    first, i.e. the moment was missed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if condition():
            return process.poll() is None
        time.sleep(POLL_S)
    return False


def session_pids(sid: int) -> list[int]:
    """The live processes of session ``sid`` (zombies, dead but not yet reaped by their parent, left out)."""
    listed = subprocess.run(["ps", "-o", "pid=,stat=", "-s", str(sid)], capture_output=True, text=True).stdout
    return [int(pid) for pid, stat in (line.split() for line in listed.splitlines()) if not stat.startswith("Z")]


def kill_session(sid: int) -> None:
    """SIGKILL every process of the session started for a command: the driver, the local Ray it started and
    Ray's workers (in process groups of their own, they would otherwise finish their epoch first)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pids = session_pids(sid)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    raise AssertionError(f"processes of session {sid} survived SIGKILL for 30 s: {session_pids(sid)}")


def kill(process: subprocess.Popen) -> None:
    """SIGKILL a process started by :func:`start_diffctl` with its whole session, and reap it."""
    kill_session(process.pid)
    process.wait()


def final_count(study_dir: Path, phase: str) -> int:
    """Trials of ``phase`` with a final status ok or diverged."""
    return sum(json.loads(p.read_text())["status"] in ("ok", "diverged") for p in study_dir.glob(f"{phase}/*/*/trial.json"))


class Killed(NamedTuple):
    """What a kill during one phase left: the study directory, whether the kill came in the window, the
    finished trials before the resume that followed, and the last resume's result."""

    study_dir: Path
    hit: bool
    before: dict
    resumed: subprocess.CompletedProcess


def _killed_when(driver: subprocess.Popen, study_dir: Path, phase: str, runs: int) -> tuple[bool, dict]:
    """SIGKILL ``driver`` once some but not all of the ``runs`` trials of ``phase`` have a final status: (whether
    it came in that window, the finished trials then)."""
    try:
        hit = poll_until(driver, lambda: 0 < final_count(study_dir, phase) < runs)
    finally:
        kill(driver)
    return hit, finished_trials(study_dir)


def killed_in_phase_and_resumed(root: Path, spec: dict, phase: str, runs: int) -> Killed:
    """Run the study ``spec`` from the command line in ``root``, SIGKILL it once some but not all of the ``runs``
    trials of ``phase`` have a final status, and resume it to the end."""
    return killed_in_phases_and_resumed(root, spec, {phase: runs})[phase]


def killed_in_phases_and_resumed(root: Path, spec: dict, runs: dict[str, int]) -> dict[str, Killed]:
    """Run the study ``spec`` from the command line in ``root`` and SIGKILL it during each phase of ``runs`` in
    turn (phase -> its trial count), resuming after each kill; the last resume runs to the end."""
    study_dir, log = root / "results" / spec["name"], root / "driver.log"
    driver = start_diffctl("study", "run", str(write_spec(root, spec)), "--storage", str(root / "results"), log=log)
    kills = []
    for phase, count in runs.items():
        if kills:
            driver = start_diffctl("study", "resume", str(study_dir), log=log)
        kills.append((phase, *_killed_when(driver, study_dir, phase, count)))
    resumed = run_diffctl("study", "resume", str(study_dir), timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    return {phase: Killed(study_dir, hit, before, resumed) for phase, hit, before in kills}


def assert_nothing_reran(killed: Killed, phase: str) -> None:
    """What a kill during ``phase`` left: the kill came during ``phase``, and every trial that was finished then
    is unchanged now (same records, same mtime: not rerun)."""
    study_dir, hit, before, _ = killed
    assert hit, f"the study finished before the {phase} phase could be interrupted"
    after = finished_trials(study_dir)
    assert set(before) <= set(after)
    assert all(after[trial_id] == before[trial_id] for trial_id in before)


def trial_files(study_dir: Path) -> list[Path]:
    """Every trial.json of the study (search and confirm)."""
    return sorted(study_dir.glob("*/*/*/trial.json"))


def finished_trials(study_dir: Path) -> dict[str, tuple[int, str, str]]:
    """Trials with a final status: ``<phase>/<arm>/<name>`` -> (metrics.jsonl mtime, its text, trial.json text)."""
    out = {}
    for path in trial_files(study_dir):
        text = path.read_text()
        if json.loads(text)["status"] in ("ok", "diverged"):
            metrics = path.with_name("metrics.jsonl")
            out[str(path.parent.relative_to(study_dir))] = (metrics.stat().st_mtime_ns, metrics.read_text(), text)
    return out


def _last_snapshot(study_dir: Path) -> str:
    """The text of the newest experiment snapshot ("" when none, or replaced while being read)."""
    snapshots = sorted((study_dir / EXPERIMENT).glob("experiment_state-*.json"))
    try:
        return snapshots[-1].read_text() if snapshots else ""
    except FileNotFoundError:  # replaced by a newer snapshot meanwhile
        return ""


def _running(study_dir: Path) -> list[tuple[Path, dict]]:
    """The trial.json paths and contents of the trials still running."""
    infos = ((path, json.loads(path.read_text())) for path in trial_files(study_dir))
    return [(path, info) for path, info in infos if info["status"] == "running"]


def in_flight_trials(study_dir: Path) -> dict[Path, str]:
    """Trials between epochs that the last experiment snapshot knows (so a resume restarts them rather than
    replacing them): trial directory -> its metrics.jsonl text."""
    known = _last_snapshot(study_dir)
    return {
        path.parent: path.with_name("metrics.jsonl").read_text()
        for path, info in _running(study_dir)
        if info["epochs_done"] >= 1 and info.get("ray_trial_id") in known
    }


def unknown_trials(study_dir: Path) -> list[str]:
    """Running trials that the last experiment snapshot does not know: a kill now would have the resume give them
    again, under their names, to new Ray trials."""
    known = _last_snapshot(study_dir)
    return [info["trial_id"] for _, info in _running(study_dir) if info.get("ray_trial_id") not in known]
