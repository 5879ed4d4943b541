"""Ctrl-C (SIGINT to the driver) in every phase of a study — the Optuna search, a PBT arm's population (while its
members train, and while they wait for each other at a perturbation epoch) and the confirmation: exit 130,
diffctl's own resume hint, and not one ``WARNING``/``ERROR`` line of a library (Ray printed "Failed to fetch
metrics for 1 trial(s)" and "Trials did not complete: [...]"). ``study status`` says the driver runs the study and
never suggests a resume before the interrupt (a PBT population waiting at a perturbation epoch has trials between
sessions), and suggests it after. (The search between epochs and before a trial's first result:
tests/test_runner.py.)"""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path

import pytest

from study_kill import poll_until
from tiny_specs import DIFFCTL, TINY, diffctl_env, run_diffctl, spec_variant, write_spec

pytestmark = pytest.mark.slow

LIBRARY_LINE = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b|Traceback")
FIXED = TINY["arms"]["fixed"]
PBT = {"budget": 4, "search": "pbt", "config": {"arm": {"kind": "fixed"}},
       "pbt": {"perturbation_interval": 2, "quantile_fraction": 0.25, "seed": 0,
               "mutations": {"arm.rho": {"type": "float", "low": 0.0, "high": 0.5}}}}
BASE = {**TINY["base"], "data": {"batch_size": 1024}}  # 16 steps an epoch


def _infos(study_dir: Path, phase: str) -> list[dict]:
    infos = []
    for path in study_dir.glob(f"{phase}/*/*/trial.json"):
        try:
            infos.append(json.loads(path.read_text()))
        except (OSError, ValueError):  # being replaced
            pass
    return infos


def _training(study_dir: Path, phase: str) -> bool:
    return any(i["status"] == "running" and i["epochs_done"] >= 1 for i in _infos(study_dir, phase))


def _waiting(study_dir: Path) -> bool:
    """A PBT member has reached the perturbation epoch (2) and another has not: the first waits for it."""
    done = [i["epochs_done"] for i in _infos(study_dir, "search")]
    return len(done) == PBT["budget"] and max(done) == 2 and min(done) < 2


MOMENTS = {
    # (spec changes, the moment of the interrupt)
    "pbt-training": ({"epochs": 6, "arms": {"pbt": PBT, "fixed": FIXED}}, lambda d: _training(d, "search")),
    "pbt-waiting": ({"epochs": 6, "arms": {"pbt": PBT, "fixed": FIXED}}, _waiting),
    "confirm": ({"epochs": 5, "arms": {"fixed": FIXED}}, lambda d: _training(d, "confirm")),
}


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_an_interrupt_prints_no_library_line(tmp_path, moment):
    changes, ready = MOMENTS[moment]
    spec = write_spec(tmp_path, spec_variant(name="intr", base=BASE, confirm={"top_k": 1, "seeds": [1001, 1002]},
                                             **changes))
    driver = subprocess.Popen([DIFFCTL, "study", "run", str(spec), "--storage", str(tmp_path)], text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=diffctl_env())
    study_dir = tmp_path / "intr"
    try:
        assert poll_until(driver, lambda: ready(study_dir), timeout=240), f"missed the moment: {moment}"
        running = run_diffctl("study", "status", str(study_dir)).stdout  # its driver is alive: nothing to resume
        driver.send_signal(signal.SIGINT)
        out, err = driver.communicate(timeout=180)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.communicate()
    assert driver.returncode == 130, err[-3000:]
    assert f"a driver (pid {driver.pid}) is running this study" in running and "resume" not in running, running
    assert f"resume with: diffctl study resume {study_dir}" in out
    library = [line for line in (out + err).splitlines() if LIBRARY_LINE.search(line)]
    assert not library, "\n".join(library)
    status = run_diffctl("study", "status", str(study_dir)).stdout
    assert f"diffctl study resume {study_dir}" in status or "paused" in status, status  # no driver: resumable
    assert "is running this study" not in status, status
