"""Trial faults: a trial whose worker process is SIGKILLed is restarted by Ray (``tune.FailureConfig``) and
continues from its own ``trainer.pt``; a diverging configuration is recorded ``diverged`` and the study
finishes; the analysis flags both. Also: early stopping (ASHA) is per arm and never touches confirmation runs.
"""

from __future__ import annotations

import json
import zlib
import os
import signal
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from study.phases.search import ArmASHA
from study.spec import spec_from_dict
from study_kill import poll_until, start_diffctl
from tiny_specs import TINY, run_diffctl, spec_variant, write_spec

EPOCHS = 4


def _lock_holder(lock: Path) -> int | None:
    """The pid of the process with ``lock`` open (the worker training that trial), from /proc."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) == str(lock) for fd in (proc / "fd").iterdir()):
                return int(proc.name)
        except OSError:
            continue
    return None


def _sane_lr_trial(study_dir: Path) -> Path | None:
    """The ``lr`` arm's non-diverging search trial, once it is between epochs 1 and the last."""
    for path in (study_dir / "search" / "lr").glob("*/trial.json"):
        info = json.loads(path.read_text())
        if info["params"].get("optim.lr") == 0.001 and info["status"] == "running" and 1 <= info["epochs_done"] < EPOCHS:
            return path.parent
    return None


@pytest.fixture(scope="module")
def faulty_study(tmp_path_factory):
    """The tiny study with 4 epochs, run from the command line; the worker of the sane ``lr`` trial is killed
    after its first epoch (the other ``lr`` trial diverges at once)."""
    root = tmp_path_factory.mktemp("faults")
    study_dir = root / "results" / "faults"
    spec = write_spec(root, spec_variant(name="faults", epochs=EPOCHS))
    log = root / "study.log"
    driver = start_diffctl("study", "run", str(spec), "--storage", str(root / "results"), log=log)
    victim: dict[str, object] = {}

    def kill_worker() -> bool:
        trial_dir = _sane_lr_trial(study_dir)
        pid = _lock_holder(trial_dir / ".lock") if trial_dir else None
        if pid is None:
            return False
        victim.update(dir=trial_dir, pid=pid, epochs=json.loads((trial_dir / "trial.json").read_text())["epochs_done"])
        os.kill(pid, signal.SIGKILL)
        return True

    killed = poll_until(driver, kill_worker, timeout=240)
    driver.wait(timeout=300)
    return SimpleNamespace(dir=study_dir, killed=killed, victim=victim, rc=driver.returncode, log=log.read_text())


def test_killed_worker_is_restarted_from_its_checkpoint(faulty_study):
    assert faulty_study.killed, "the sane lr trial finished before its worker could be killed"
    assert faulty_study.rc == 0, faulty_study.log[-2000:]
    trial_dir = faulty_study.victim["dir"]
    info = json.loads((trial_dir / "trial.json").read_text())
    assert info["status"] == "ok" and info["restarts"] == 1 and info["epochs_done"] == EPOCHS
    epochs = [json.loads(line)["epoch"] for line in (trial_dir / "metrics.jsonl").read_text().splitlines()]
    assert epochs == list(range(1, EPOCHS + 1))  # continued after the epochs it had saved, none repeated or lost
    assert not (trial_dir / "trainer.pt").exists()
    print(f"worker {faulty_study.victim['pid']} killed after epoch {faulty_study.victim['epochs']}; trial finished")


def test_diverged_trial_is_recorded_and_the_study_finishes(faulty_study):
    infos = [json.loads(p.read_text()) for p in faulty_study.dir.glob("*/*/*/trial.json")]
    diverged = [i for i in infos if i["status"] == "diverged"]
    assert len(diverged) == 1 and diverged[0]["params"]["optim.lr"] == 10.0
    assert "non-finite" in diverged[0]["reason"] or "nan" in diverged[0]["reason"].lower()
    assert {i["status"] for i in infos} <= {"ok", "diverged", "stopped"}
    assert sum(i["phase"] == "confirm" for i in infos) == 4


def test_analysis_flags_the_restart_and_the_divergence(faulty_study):
    trials = pd.read_parquet(faulty_study.dir / "trials.parquet")
    restarted = trials[trials["restarted"]]
    assert list(restarted["trial_id"]) == [faulty_study.victim["dir"].name]
    assert trials["diverged"].sum() == 1
    report = (faulty_study.dir / "report.md").read_text()
    assert "**diverged**" in report and "1 restart(s), then **ok**" in report


def _fake_trial(trial_id: str, phase: str, arm: str) -> SimpleNamespace:
    return SimpleNamespace(trial_id=trial_id, config={"phase": phase, "arm": arm})


def test_asha_compares_trials_of_one_arm_only():
    spec = spec_from_dict(spec_variant(asha={"grace_period": 1, "reduction_factor": 2}, epochs=EPOCHS))
    scheduler = ArmASHA(spec)
    key = "objective_val_loss_unweighted"  # the first objective (min)
    trials = {name: _fake_trial(name, phase, arm) for name, phase, arm in [
        ("a1", "search", "fixed"), ("a2", "search", "fixed"), ("a3", "search", "fixed"),
        ("b1", "search", "lr"), ("c1", "confirm", "fixed")]}  # fmt: skip
    for trial in trials.values():
        scheduler.on_trial_add(None, trial)
    decide = lambda name, loss: scheduler.on_trial_result(None, trials[name], {"epoch": 1, key: loss})  # noqa: E731
    assert decide("a1", 10.0) == "CONTINUE" and decide("a2", 5.0) == "CONTINUE"  # each better than the rung so far
    # 50 is worse than the median (7.5) of fixed's rung: stopped; lr's first trial meets an empty rung.
    assert decide("a3", 50.0) == "STOP"
    assert decide("b1", 50.0) == "CONTINUE"
    assert decide("c1", 1e9) == "CONTINUE"  # confirmation runs always run to the end


def test_asha_study_stops_search_trials_and_confirms_in_full(tmp_path):
    """A real study under ASHA: search trials that trail their arm's rung stop early (``stopped``, the epoch in
    the reason), the others and every confirmation run go the whole way."""
    # Five random draws (all TPE start-up) with the arm's sampler seed 0: w_kl values far enough apart that the
    # trailing ones stop at a rung (the spec's seed is offset so that the arm's own seed, moved by its label, is 0).
    spec = spec_variant(name="asha", epochs=EPOCHS, asha={"grace_period": 1, "reduction_factor": 2},
                        sampler_seed=(2**31 - zlib.crc32(b"fixed") % 2**31) % 2**31,
                        arms={"fixed": {**TINY["arms"]["fixed"], "budget": 5, "startup_trials": 10}})  # fmt: skip
    run = run_diffctl("study", "run", str(write_spec(tmp_path, spec)), "--storage", str(tmp_path / "results"))
    assert run.returncode == 0, run.stderr[-2000:]
    assert "TUNE_RESULT_BUFFER" not in run.stderr  # no result buffering asked for alongside ASHA
    infos = [json.loads(p.read_text()) for p in (tmp_path / "results" / "asha").glob("*/fixed/*/trial.json")]
    search = [i for i in infos if i["phase"] == "search"]
    stopped = [i for i in search if i["status"] == "stopped"]
    assert len(search) == 5 and 1 <= len(stopped) < 5
    assert all(i["epochs_done"] < EPOCHS and i["reason"].startswith("stopped early by ASHA") for i in stopped)
    assert all(i["status"] == "ok" and i["epochs_done"] == EPOCHS for i in infos if i not in stopped)
    assert sum(i["phase"] == "confirm" for i in infos) == 2
