"""study/searcher.py: the journal lock excludes a second writer while held, and a holder killed with SIGKILL
(a driver killed while appending to the Optuna journal) leaves it free at once; a trial's end is told to Optuna
once, with its status and epochs, even by a searcher restored from before a killed driver's tell."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time

import optuna

from study.journal import JOURNAL_FILE, JournalFlock, journal_storage
from study.phases.search import ArmSearch
from study.searcher import StudySearch
from study.spec import spec_from_dict
from study.trialdir import TrialInfo, read_info, write_info
from tiny_specs import TINY

HOLD = """
import sys, time
from pathlib import Path
from study.journal import JournalFlock
JournalFlock(Path(sys.argv[1])).acquire()
print("held", flush=True)
time.sleep(60)
"""


def _locked(path) -> bool:
    """Whether another process holds the flock on ``path``."""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def test_lock_of_a_killed_holder_is_free_at_once(tmp_path):
    path = tmp_path / "journal.flock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        assert _locked(path)
    finally:
        holder.kill()
        holder.wait()
    lock = JournalFlock(path)
    start = time.perf_counter()
    assert lock.acquire()
    assert time.perf_counter() - start < 1.0  # Optuna's own lock files wait 30 s for a dead holder
    lock.release()
    assert not _locked(path)


def test_journal_storage_writes_under_it(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="fixed", storage=journal_storage(tmp_path))
    study.optimize(lambda trial: trial.suggest_float("w", 0.0, 1.0), n_trials=3)
    assert len(optuna.load_study(study_name="fixed", storage=journal_storage(tmp_path)).trials) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [JOURNAL_FILE, f"{JOURNAL_FILE}.flock"]  # no .lock


def _searcher(tmp_path):
    spec = spec_from_dict(TINY)
    searcher = ArmSearch(spec, next(iter(spec.arms)), journal_storage(tmp_path))
    metrics = [searcher.metric] if isinstance(searcher.metric, str) else list(searcher.metric)
    return spec, searcher, metrics


def test_trial_told_before_a_kill_is_not_told_again(tmp_path, caplog):
    """A driver killed between Optuna's tell and Tune's searcher snapshot leaves a restored searcher that does not
    know the trial ended; completing it again keeps the journal's values and logs nothing."""
    spec, searcher, metrics = _searcher(tmp_path)
    assert searcher.suggest("t1") is not None
    values = [1.0] * len(metrics)
    searcher._ot_study.tell(searcher._ot_trials["t1"], values)  # the killed driver's tell
    with caplog.at_level("WARNING"):
        searcher.on_trial_complete("t1", result={"status": "ok", "epoch": spec.epochs, **{m: 2.0 for m in metrics}})
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == []
    [frozen] = searcher._ot_study.get_trials()
    assert frozen.state == optuna.trial.TrialState.COMPLETE and frozen.values == values
    assert "t1" in searcher._completed_trials


def test_trial_completed_once_is_told_with_status_and_epochs(tmp_path):
    spec, searcher, metrics = _searcher(tmp_path)
    searcher.suggest("t1")
    searcher.on_trial_complete("t1", result={"status": "ok", "epoch": spec.epochs, **{m: 0.5 for m in metrics}})
    [frozen] = searcher._ot_study.get_trials()
    assert frozen.state == optuna.trial.TrialState.COMPLETE and frozen.values == [0.5] * len(metrics)
    assert frozen.user_attrs["status"] == "ok" and frozen.user_attrs["epochs"] == spec.epochs
    assert frozen.user_attrs["ray_trial_id"] == "t1"


def test_a_search_trial_stopped_at_a_rung_says_so_when_it_stops(tmp_path):
    """Under ASHA, a search trial that Tune ends before its last epoch gets status ``stopped`` at once (``study
    status`` counts it stopped while the study runs); one that ran every epoch, or errored, keeps its own."""
    arms = {"fixed": {**TINY["arms"]["fixed"], "budget": 3}}
    spec = spec_from_dict(dict(TINY, epochs=4, asha={"grace_period": 1, "reduction_factor": 2}, arms=arms))
    searcher = StudySearch(spec, tmp_path, journal_storage(tmp_path))
    ids = ["s1", "s2", "s3"]
    for trial_id in ids:
        config = searcher.suggest(trial_id)
        assert config["phase"] == "search" and config["arm"] == "fixed"
        trial_dir = tmp_path / "search" / "fixed" / trial_id
        trial_dir.mkdir(parents=True)
        write_info(trial_dir, TrialInfo(arm="fixed", phase="search", trial_id=trial_id,
                                              params=config["params"], seed=0, status="running"))
    metrics = {m: 0.5 for m in ("objective_val_loss_unweighted", "objective_triplet_r_A")}
    searcher.on_trial_complete("s1", result={"status": "ok", "epoch": 1, **metrics})
    searcher.on_trial_complete("s2", result={"status": "ok", "epoch": 4, **metrics})
    searcher.on_trial_complete("s3", error=True)
    status = {t: read_info(tmp_path / "search" / "fixed" / t) for t in ids}
    assert (status["s1"].status, status["s1"].reason) == ("stopped", "stopped early by ASHA after epoch 1")
    assert status["s2"].status == status["s3"].status == "running"  # their own status (or _finish) decides
