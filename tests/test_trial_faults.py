"""Trial faults: a trial whose worker process is SIGKILLed is restarted by Ray (``tune.FailureConfig``) and
continues from its own ``trainer.pt``; a diverging configuration is recorded ``diverged`` and the study
finishes; the analysis flags both. Also: early stopping is per arm and replicate, judged against earlier batches,
and never touches confirmation runs.
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

from study.phases.search.pruner import SearchPruner
from study.protocol import spec_from_dict
from study.protocol.plan import replicate_of
from study.trialdir import TrialInfo, write_info, write_metrics
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


def _searched(study_dir: Path, arm: str, name: str, batch: int, records: list[dict]) -> None:
    """A finished search trial's files: its trial.json (replicate, batch) and its records."""
    trial_dir = study_dir / "search" / arm / name
    trial_dir.mkdir(parents=True)
    info = TrialInfo(arm=arm, phase="search", trial_id=name, params={}, seed=0, status="ok", replicate=replicate_of(name),
                     batch=batch, slot=0, epochs_done=len(records))
    write_info(trial_dir, info)
    write_metrics(trial_dir, records)


def _record(epoch: int, r: float, exact: float = 1.0) -> dict:
    return {"epoch": epoch, "status": "ok", "triplet_r_A": r, "val_exact_match_A": exact, "val_loss_unweighted": 30.0}


def test_a_rung_judges_against_earlier_batches_of_its_arm_and_replicate_only(tmp_path):
    """Early stopping (study.phases.search.SearchPruner): a trial at a rung continues when its score is not below
    the median (reduction factor 2) of the scores its arm-replicate's earlier batches recorded there; the first
    batch, other arms, other replicates and confirmation runs are never judged; bit-identical records count once;
    the constraints count at no rung."""
    spec = spec_from_dict(spec_variant(asha={"grace_period": 1, "reduction_factor": 2}, epochs=EPOCHS, search_batch=3,
                                       constraints=["val_exact_match_A >= 0.5"]))
    assert SearchPruner(spec, tmp_path).rungs == [1, 2]  # the last epoch is no rung
    _searched(tmp_path, "fixed", "r0-0000", 0, [_record(1, 0.6), _record(2, 0.6)])
    _searched(tmp_path, "fixed", "r0-0001", 0, [_record(1, 0.7), _record(2, 0.7)])
    _searched(tmp_path, "fixed", "r0-0002", 0, [_record(1, 0.6), _record(2, 0.6)])  # the same records as r0-0000
    _searched(tmp_path, "fixed", "r1-0000", 0, [_record(1, 0.9), _record(2, 0.9)])  # another replicate
    _searched(tmp_path, "lr", "r0-0000", 0, [_record(1, 0.95), _record(2, 0.95)])  # another arm
    pruner = SearchPruner(spec, tmp_path)

    def decide(record, arm="fixed", replicate=0, batch=1, phase="search"):
        trial = SimpleNamespace(config={"phase": phase, "arm": arm, "replicate": replicate, "batch": batch})
        return pruner.on_trial_result(None, trial, record)

    # Rung 1: the median of {0.6, 0.7} is 0.65 (with r0-0002 counted again it would be 0.6).
    assert decide(_record(1, 0.64)) == "STOP" and decide(_record(1, 0.66)) == "CONTINUE"
    # No rung judges the constraint, the last included: reconstruction may come later than ranking.
    assert decide(_record(1, 0.66, exact=0.1)) == "CONTINUE"
    assert decide(_record(2, 0.8, exact=0.1)) == "CONTINUE" and decide(_record(2, 0.64)) == "STOP"
    assert decide(_record(1, 0.1), batch=0) == "CONTINUE"  # the first batch has nothing to meet
    assert decide(_record(1, 0.8), replicate=1) == "STOP"  # its replicate's earlier batch recorded 0.9
    assert decide(_record(1, 0.1), arm="lr", batch=0) == "CONTINUE"
    assert decide(_record(1, 0.1), phase="confirm") == "CONTINUE"  # confirmation runs always run to the end


def test_asha_study_stops_search_trials_and_confirms_in_full(tmp_path):
    """A real study with early stopping (one trial a batch): search trials that trail their arm's rung stop early (``stopped``, the epoch in
    the reason), the others and every confirmation run go the whole way."""
    # Five random draws (all TPE start-up) with the arm's sampler seed 0: w_kl values far enough apart that the
    # trailing ones stop at a rung (the spec's seed is offset so that the arm's own seed, moved by its label, is 0).
    spec = spec_variant(name="asha", epochs=EPOCHS, asha={"grace_period": 1, "reduction_factor": 2}, search_batch=1,
                        sampler_seed=(2**31 - zlib.crc32(b"fixed") % 2**31) % 2**31,
                        arms={"fixed": {**TINY["arms"]["fixed"], "budget": 5, "startup_trials": 10}})  # fmt: skip
    run = run_diffctl("study", "run", str(write_spec(tmp_path, spec)), "--storage", str(tmp_path / "results"))
    assert run.returncode == 0, run.stderr[-2000:]
    assert "TUNE_RESULT_BUFFER" not in run.stderr  # no result buffering asked for alongside ASHA
    infos = [json.loads(p.read_text()) for p in (tmp_path / "results" / "asha").glob("*/fixed/*/trial.json")]
    search = [i for i in infos if i["phase"] == "search"]
    stopped = [i for i in search if i["status"] == "stopped"]
    assert len(search) == 5 and 1 <= len(stopped) < 5
    assert all(i["epochs_done"] < EPOCHS and i["reason"].startswith("stopped early after epoch") for i in stopped)
    assert all(i["status"] == "ok" and i["epochs_done"] == EPOCHS for i in infos if i not in stopped)
    assert sum(i["phase"] == "confirm" for i in infos) == 2
