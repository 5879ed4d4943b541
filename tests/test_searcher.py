"""The journal and an arm's Optuna search: the journal lock excludes a second writer while held, and a holder
killed with SIGKILL leaves it free at once; a search asks in batches and tells Optuna in slot order once a batch
has ended (COMPLETE with the selection value, PRUNED with its curve, FAIL), so that what is searched does not
depend on which trial ends first; a trial's end is told once, even by a searcher restored from before a killed
driver's tell, and a batch a killed driver asked is found again in the journal."""

from __future__ import annotations

import pickle
import subprocess
import sys
import time

import optuna

from diffctl.files import lock_held
from study.journal import JOURNAL_FILE, JournalFlock, journal_storage
from study.phases.search import ArmSearch
from study.searcher import StudySearch
from study.protocol import spec_from_dict
from study.trialdir import TrialInfo, read_info, write_info, write_metrics
from tiny_specs import TINY

HOLD = """
import sys, time
from pathlib import Path
from study.journal import JournalFlock
JournalFlock(Path(sys.argv[1])).acquire()
print("held", flush=True)
time.sleep(60)
"""


def test_lock_of_a_killed_holder_is_free_at_once(tmp_path):
    path = tmp_path / "journal.flock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        assert lock_held(path)
    finally:
        holder.kill()
        holder.wait()
    lock = JournalFlock(path)
    start = time.perf_counter()
    assert lock.acquire()
    assert time.perf_counter() - start < 1.0  # Optuna's own lock files wait 30 s for a dead holder
    lock.release()
    assert not lock_held(path)


def test_journal_storage_writes_under_it(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="fixed", storage=journal_storage(tmp_path))
    study.optimize(lambda trial: trial.suggest_float("w", 0.0, 1.0), n_trials=3)
    assert len(optuna.load_study(study_name="fixed", storage=journal_storage(tmp_path)).trials) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [JOURNAL_FILE, f"{JOURNAL_FILE}.flock"]  # no .lock


def _search(tmp_path, batch: int = 1, budget: int = 4, arm: str = "fixed") -> tuple:
    spec = spec_from_dict(dict(TINY, search_batch=batch, arms={**TINY["arms"], arm: {**TINY["arms"][arm], "budget": budget}}))
    return spec, ArmSearch(spec, arm, 0, journal_storage(tmp_path))


def _record(spec, epoch: int | None = None, r: float = 0.5, status: str = "ok") -> dict:
    return {"status": status, "epoch": spec.epochs if epoch is None else epoch, "triplet_r_A": r,
            "val_exact_match_A": 1.0}


def test_trial_told_before_a_kill_is_not_told_again(tmp_path, caplog):
    """A driver killed between Optuna's tell and Tune's searcher snapshot leaves a restored searcher that does not
    know the trial ended; completing it again keeps the journal's value and logs nothing."""
    spec, search = _search(tmp_path)
    assert search.next_run("t1")["name"] == "r0-0000"
    search.study.tell(search.slots[0].number, 1.0)  # the killed driver's tell
    with caplog.at_level("WARNING"):
        search.on_complete("t1", _record(spec, r=2.0), error=False)
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == []
    [frozen] = search.study.get_trials()
    assert frozen.state == optuna.trial.TrialState.COMPLETE and frozen.values == [1.0]


def test_a_finished_trial_is_complete_with_its_selection_value_status_and_epochs(tmp_path):
    spec, search = _search(tmp_path)
    search.next_run("t1")
    search.on_complete("t1", _record(spec, r=0.5), error=False)
    [frozen] = search.study.get_trials()
    assert frozen.state == optuna.trial.TrialState.COMPLETE and frozen.values == [0.5]
    assert search.study.metric_names == ["triplet_r_A"]  # the selection metric: the one ranking rule
    assert (frozen.user_attrs["status"], frozen.user_attrs["epochs"], frozen.user_attrs["ray_trial_id"]) == \
        ("ok", spec.epochs, "t1")
    assert (frozen.user_attrs["name"], frozen.user_attrs["slot"], frozen.user_attrs["batch"]) == ("r0-0000", 0, 0)
    assert frozen.constraints == {"status_ok": 0.0, "val_exact_match_A >= 0.0": -1.0}
    assert frozen.intermediate_values == {spec.epochs: 0.5}


def test_stopped_trials_are_pruned_with_their_curve_and_failures_fail(tmp_path):
    spec, search = _search(tmp_path, budget=3)
    spec = spec.model_copy(update={"epochs": 4})
    search.spec = spec
    for trial_id in ("stopped", "diverged", "error"):
        search.next_run(trial_id)
        if trial_id == "stopped":
            search.on_result("stopped", _record(spec, 1, r=0.4))
            search.on_complete("stopped", _record(spec, 2, r=0.45), error=False)  # the rung's result ends it
        elif trial_id == "diverged":
            search.on_complete("diverged", {"status": "diverged", "epoch": 3, "reason": "non-finite training loss"},
                               error=False)
        else:
            search.on_complete("error", None, error=True)
    pruned, diverged, errored = search.study.get_trials()
    assert pruned.state == optuna.trial.TrialState.PRUNED and pruned.intermediate_values == {1: 0.4, 2: 0.45}
    assert pruned.user_attrs["status"] == "stopped" and pruned.user_attrs["epochs"] == 2
    assert diverged.state == errored.state == optuna.trial.TrialState.FAIL
    assert diverged.user_attrs["reason"] == "non-finite training loss" and errored.user_attrs["status"] == "error"
    assert diverged.values is None  # no stand-in value: nothing squashes the dashboard's plots


def test_a_batch_is_told_in_slot_order_once_all_its_trials_ended(tmp_path):
    spec, search = _search(tmp_path, batch=2, budget=4)
    first, second = search.next_run("t1"), search.next_run("t2")
    assert (first["slot"], second["slot"], first["batch"]) == (0, 1, 0)
    assert search.next_run("t3") is None  # the next batch waits for this one
    search.on_complete("t2", _record(spec, r=0.7), error=False)
    assert [t.state for t in search.study.get_trials()] == [optuna.trial.TrialState.RUNNING] * 2  # not told yet
    assert search.next_run("t3") is None
    search.on_complete("t1", _record(spec, r=0.6), error=False)
    assert [t.values for t in search.study.get_trials()] == [[0.6], [0.7]]
    assert search.next_run("t3")["batch"] == 1


def _draws(tmp_path, order: list[str]) -> list[dict]:
    """The params of a 4-trial search in batches of 2 whose first batch ends in ``order``."""
    tmp_path.mkdir()
    spec, search = _search(tmp_path, batch=2, budget=4)
    given = {t: search.next_run(t) for t in ("t1", "t2")}
    for trial_id in order:
        search.on_complete(trial_id, _record(spec, r=0.6 if trial_id == "t1" else 0.7), error=False)
    later = [search.next_run("t3"), search.next_run("t4")]
    return [c["params"] for c in (*given.values(), *later)]


def test_what_is_searched_does_not_depend_on_which_trial_ends_first(tmp_path):
    assert _draws(tmp_path / "a", ["t1", "t2"]) == _draws(tmp_path / "b", ["t2", "t1"])


def test_a_batch_asked_by_a_killed_driver_is_found_again_not_asked_twice(tmp_path):
    """A restored searcher (its state from before the batch was asked) takes the trials the killed driver asked
    from the journal: the same params, no new Optuna trial."""
    spec, search = _search(tmp_path, batch=2, budget=4)
    for trial_id in ("t1", "t2"):
        search.next_run(trial_id)
    search.on_complete("t1", _record(spec), error=False)
    search.on_complete("t2", _record(spec), error=False)
    snapshot = pickle.dumps(search)  # Tune's snapshot, before the next batch
    asked = [search.next_run("t3")["params"], search.next_run("t4")["params"]]  # then the driver is killed
    restored = pickle.loads(snapshot)
    again = [restored.next_run("u3")["params"], restored.next_run("u4")["params"]]
    assert again == asked and len(restored.study.get_trials()) == 4


def test_a_batch_asked_and_told_by_a_killed_driver_is_not_asked_again(tmp_path):
    """A driver killed after it asked a batch, ran and told it, but before its searcher snapshot: the restored
    searcher takes those trials as ended (no new Optuna trial for their slots) and asks the next batch."""
    spec, search = _search(tmp_path, batch=2, budget=4)
    snapshot = pickle.dumps(search)  # Tune's snapshot, before the first batch
    for trial_id in ("t1", "t2"):
        search.next_run(trial_id)
    search.on_complete("t1", _record(spec, r=0.6), error=False)
    search.on_complete("t2", {"status": "diverged", "epoch": 1, "reason": "nan"}, error=False)
    expected = [search.next_run("t3")["params"], search.next_run("t4")["params"]]
    restored = pickle.loads(snapshot)
    later = [restored.next_run("u3"), restored.next_run("u4")]
    assert [run["slot"] for run in later] == [2, 3] and [run["params"] for run in later] == expected
    assert [s.result.get("triplet_r_A") for s in restored.slots[:2]] == [0.6, None]
    assert restored.status(restored.slots[1]) == "diverged" and len(restored.study.get_trials()) == 4


def test_a_search_trial_stopped_at_a_rung_says_so_when_it_stops(tmp_path):
    """Under early stopping, a search trial that Tune ends before its last epoch gets status ``stopped`` at once
    (``study status`` counts it stopped while the study runs); one that ran every epoch, or errored, keeps its own."""
    arms = {"fixed": {**TINY["arms"]["fixed"], "budget": 3}}
    spec = spec_from_dict(dict(TINY, epochs=4, asha={"grace_period": 1, "reduction_factor": 2}, arms=arms,
                              search_batch=3, max_concurrent=3))
    searcher = StudySearch(spec, tmp_path, journal_storage(tmp_path))
    ids = ["s1", "s2", "s3"]
    names = {}
    for trial_id in ids:
        config = searcher.suggest(trial_id)
        assert config["phase"] == "search" and config["arm"] == "fixed"
        names[trial_id] = config["name"]
        trial_dir = tmp_path / "search" / "fixed" / config["name"]
        trial_dir.mkdir(parents=True)
        write_info(trial_dir, TrialInfo(arm="fixed", phase="search", trial_id=config["name"],
                                        params=config["params"], seed=0, status="running"))
    searcher.on_trial_complete("s1", result={"status": "ok", "epoch": 1, "triplet_r_A": 0.5})
    searcher.on_trial_complete("s2", result={"status": "ok", "epoch": 4, "triplet_r_A": 0.5})
    searcher.on_trial_complete("s3", error=True)
    status = {t: read_info(tmp_path / "search" / "fixed" / names[t]) for t in ids}
    assert status["s1"].status == "stopped" and status["s1"].reason.startswith("stopped early after epoch 1")
    assert status["s2"].status == status["s3"].status == "running"  # their own status (or _finish) decides


def test_a_half_made_ask_of_a_killed_driver_is_closed_and_asked_again_alike(tmp_path):
    """A driver killed between Optuna's ask and the trial's last attribute leaves a RUNNING trial without its slot:
    the restored search closes it (FAIL, status orphan: not pending for TPE's constant liar) and asks that slot
    again, drawing what an uninterrupted search drew."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    spec, uninterrupted = _search(tmp_path / "a", batch=2, budget=2)
    expected = [uninterrupted.next_run("t1")["params"], uninterrupted.next_run("t2")["params"]]
    spec, search = _search(tmp_path / "b", batch=2, budget=2)
    half = search.study.ask()  # the killed driver's ask: no attributes yet
    half.set_user_attr("name", "r0-0000")
    again = [search.next_run("u1")["params"], search.next_run("u2")["params"]]
    assert again == expected
    states = {t.number: (t.state, t.user_attrs.get("status")) for t in search.study.get_trials()}
    assert states[half.number] == (optuna.trial.TrialState.FAIL, "orphan") and len(states) == 3


def test_a_restored_search_tells_a_trial_that_ended_unseen_with_its_whole_curve(tmp_path):
    """The driver saw epoch 1, was killed, and the trial ran to its end: the restored search finds that end in the
    trial's files and reports every epoch they hold before it tells Optuna."""
    spec, search = _search(tmp_path, batch=1, budget=1)
    spec = spec.model_copy(update={"epochs": 2})
    search.spec = spec
    config = search.next_run("t1")
    search.on_result("t1", _record(spec, 1, r=0.6))  # the last result the killed driver saw
    trial_dir = tmp_path / "search" / "fixed" / config["name"]
    trial_dir.mkdir(parents=True)
    write_metrics(trial_dir, [_record(spec, 1, r=0.6), _record(spec, 2, r=0.7)])
    write_info(trial_dir, TrialInfo(arm="fixed", phase="search", trial_id=config["name"], params=config["params"],
                                    seed=0, status="ok", epochs_done=2))
    search.reconcile(tmp_path / "search" / "fixed")
    [frozen] = search.study.get_trials()
    assert frozen.state == optuna.trial.TrialState.COMPLETE and frozen.values == [0.7]
    assert frozen.intermediate_values == {1: 0.6, 2: 0.7}
