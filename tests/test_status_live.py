"""``study status`` knows a running driver (study/driver.py): while a process holds the study's driver lock, a trial
between sessions (a PBT member waiting for its population) is the driver's to continue, and status never tells the
user to resume; once the holder dies (killed: the kernel frees its flock) it does. A second driver is refused."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from diffctl.cli import main
from diffctl.errors import InputError
from study.driver import DRIVER_LOCK, driver_lock, driver_pid
from study.status import status_lines, storage_lines
from study_fixture import copy_study

HOLD = ("import sys; from pathlib import Path; from study.driver import driver_lock\n"
        "with driver_lock(Path(sys.argv[1])):\n    print('held', flush=True); sys.stdin.read()\n")


@pytest.fixture
def paused(direct_study, tmp_path):
    """The tiny study (built without Ray) as an interrupted PBT phase leaves it: not finished, its search phase
    running, one search trial 'running' in its trial.json that no process trains."""
    study_dir = copy_study(direct_study, tmp_path)
    state = json.loads((study_dir / "state.json").read_text())
    state["finished"] = False
    state["phases"]["search"]["fixed"] = "running"
    (study_dir / "state.json").write_text(json.dumps(state))
    trial = next((study_dir / "search" / "fixed").glob("*/trial.json"))
    info = json.loads(trial.read_text())
    info["status"] = "running"
    trial.write_text(json.dumps(info))
    return study_dir


@pytest.fixture
def holder(paused):
    """Another process holding the study's driver lock (as a running driver does)."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(paused)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    yield process
    if process.poll() is None:
        process.stdin.close()
        process.wait(timeout=30)


def _row(lines, phase, arm):
    return next(line.split() for line in lines if line.startswith(phase) and line.split()[1] == arm)


def test_without_a_driver_status_says_resume(paused):
    lines = status_lines(paused)
    assert driver_pid(paused) is None
    assert _row(lines, "search", "fixed")[2] == "paused"
    assert any("no process trains them" in line and "diffctl study resume" in line for line in lines), lines
    assert any("not finished (resume:" in line for line in storage_lines(paused.parent)), storage_lines(paused.parent)


def test_with_a_driver_alive_status_never_says_resume(paused, holder):
    assert driver_pid(paused) == holder.pid
    lines = status_lines(paused)
    text = "\n".join(lines)
    assert "resume" not in text, text
    assert _row(lines, "search", "fixed")[2] == "running"  # not paused: its driver continues it
    assert f"a driver (pid {holder.pid}) is running this study; 1 trial(s) between sessions" in text, text
    listed = "\n".join(storage_lines(paused.parent))
    assert f"running (a driver, pid {holder.pid}, runs it now)" in listed and "resume" not in listed, listed


def test_a_second_driver_is_refused(paused, holder, capsys):
    with pytest.raises(InputError, match=f"a driver \\(pid {holder.pid}\\) is running this study"):
        with driver_lock(paused):
            pass
    assert main(["study", "resume", str(paused)]) == 2  # refused before Ray starts
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is running this study" in err, err


def test_a_killed_driver_frees_the_lock(paused, holder):
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    assert (paused / DRIVER_LOCK).is_file() and driver_pid(paused) is None  # the file stays, its flock went
    assert any("diffctl study resume" in line for line in status_lines(paused))
    with driver_lock(paused):  # a resume takes it
        assert driver_pid(paused) is not None
