"""End to end on a local Ray: the tiny study (2 arms x 2 trials x 2 epochs, confirmation on 2 seeds) leaves
per-trial records for every trial and an Optuna storage that ``optuna.load_study`` reads; a study whose driver
is killed resumes without rerunning or losing a trial.

One study serves every test (module fixture): ``diffctl study run`` is killed mid-search and resumed with
``diffctl study resume``; the tests read the finished directory.
"""

import json
import re
import socket
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from diffctl.cli import main
from diffctl.config import load_config
from diffctl.files import read_jsonl
from study.phases.search import ORPHAN
from study.protocol.constraints import WORST
from study.status import status_lines
from study.trialdir import read_trials
from study_kill import finished_trials, in_flight_trials, kill, poll_until, start_diffctl, unknown_trials
from tiny_specs import TINY, run_diffctl, write_spec

pytestmark = pytest.mark.slow
TRIAL_KEYS = {"arm", "phase", "trial_id", "params", "seed", "status", "reason", "epochs_done", "wall_time_s", "restarts",
              "nodes", "ray_trial_id", "replicate", "code", "mixed_code"}


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    """Run the tiny study from the command line, SIGKILL its driver with its Ray while one trial has finished
    and another is between epochs, then resume it: one study exercises run, kill and resume."""
    root = tmp_path_factory.mktemp("tiny")
    study_dir = root / "results" / "tiny"
    start = time.perf_counter()
    driver = start_diffctl("study", "run", str(write_spec(root, TINY)), "--storage", str(root / "results"))
    in_flight: dict[Path, str] = {}

    def one_done_one_between_epochs() -> bool:  # e.g. lr's diverged trial done, the sane one after epoch 1
        in_flight.clear()
        in_flight.update(in_flight_trials(study_dir))
        # No trial started since the last snapshot: the resume would abandon it and run another in its place
        # (tests/test_kill_anywhere.py covers that; here every trial is counted exactly).
        return bool(in_flight) and bool(finished_trials(study_dir)) and not unknown_trials(study_dir)

    try:
        poll_until(driver, one_done_one_between_epochs)
    finally:
        kill(driver)
    before = finished_trials(study_dir)
    killed_state = json.loads((study_dir / "state.json").read_text())
    resumed = run_diffctl("study", "resume", str(study_dir))
    print(f"tiny study, killed ({killed_state['phases']}) and resumed: {time.perf_counter() - start:.1f} s")
    return SimpleNamespace(dir=study_dir, before=before, in_flight=in_flight, killed_state=killed_state, resumed=resumed)


def trial_dirs(study_dir: Path, phase: str, arm: str) -> list[Path]:
    """The trial directories of one phase and arm, less a trial that the killed driver started after its last
    snapshot (rare, see the fixture) and that the resumed study replaced."""
    return sorted(t.dir for t in read_trials(study_dir / phase / arm) if not t.abandoned)


def info(trial_dir: Path) -> dict:
    return json.loads((trial_dir / "trial.json").read_text())


def journal(study_dir: Path) -> JournalStorage:
    return JournalStorage(JournalFileBackend(str(study_dir / "optuna.journal")))


def test_every_trial_leaves_its_records(tiny_study):
    tiny_study = tiny_study.dir
    assert tiny_study.is_absolute() and tiny_study.name == "tiny"
    for phase, count in (("search", 2), ("confirm", 2)):
        for arm in ("fixed", "lr"):
            dirs = trial_dirs(tiny_study, phase, arm)
            assert len(dirs) == count, [(d.name, info(d)["status"], info(d)["reason"]) for d in dirs]
            for d in dirs:
                data = info(d)
                assert set(data) == TRIAL_KEYS | ({"source_trial", "source_feasible"} if phase == "confirm"
                                                  else {"sampling", "batch", "slot"})
                # A budget of 2 is all TPE start-up: both search trials are drawn at random, and say so.
                assert phase == "confirm" or data["sampling"] == "random"
                assert (data["arm"], data["phase"], data["trial_id"]) == (arm, phase, d.name)
                assert len(data["nodes"]) == data["restarts"] + 1  # one node per session, all this machine's
                assert {n["hostname"] for n in data["nodes"]} == {socket.gethostname()}
                records = read_jsonl(d / "metrics.jsonl")
                assert [r["epoch"] for r in records] == list(range(1, data["epochs_done"] + 1))
                assert records[-1]["status"] == data["status"]
                assert data["wall_time_s"] > 0
                config = load_config(d / "config.yaml")
                assert config.optim.epochs == 2 and config.seed == data["seed"]
                for key, value in data["params"].items():
                    section, name = key.split(".")
                    assert getattr(getattr(config, section), name) == value


def test_diverged_trial_ends_normally(tiny_study):
    tiny_study = tiny_study.dir
    by_lr = {info(d)["params"]["optim.lr"]: info(d) for d in trial_dirs(tiny_study, "search", "lr")}
    assert set(by_lr) == {10.0, 0.001}
    diverged, sane = by_lr[10.0], by_lr[0.001]
    assert diverged["status"] == "diverged" and "non-finite" in diverged["reason"]
    assert "arm.w_rank" not in diverged["params"] and 0.1 <= sane["params"]["arm.w_rank"] <= 1.0
    assert sane["status"] == "ok" and sane["epochs_done"] == 2
    # Ray's trial directory says the trial's phase, arm and name; its results carry a finite stand-in, never NaN.
    [ray_dir] = (tiny_study / "ray").glob(f"search-lr-{diverged['trial_id']}-*")
    assert ray_dir.name == f"search-lr-{diverged['trial_id']}-{diverged['ray_trial_id']}"
    result = read_jsonl(ray_dir / "result.json")[-1]
    assert result["objective_val_loss_unweighted"] == WORST and result["feasible"] is False


def test_optuna_storage_holds_every_search_trial(tiny_study):
    """One trial per search trial (a batch asked by the killed driver is found again, never asked twice): the
    finished ones COMPLETE with their selection value and constraints, the diverged one FAIL without a value. An
    ask the kill cut in half is closed FAIL as an orphan (and asked again whole)."""
    tiny_study = tiny_study.dir
    storage = journal(tiny_study)
    for arm in ("fixed", "lr"):
        study = optuna.load_study(study_name=arm, storage=storage)
        assert study.metric_names == ["triplet_r_A"] and study.direction == optuna.study.StudyDirection.MAXIMIZE
        orphans = [t for t in study.trials if t.user_attrs.get("status") == ORPHAN]
        assert all(t.state == TrialState.FAIL for t in orphans)
        by_name = {t.user_attrs["name"]: t for t in study.trials if t.user_attrs.get("status") != ORPHAN}
        assert len(by_name) == len(study.trials) - len(orphans)  # no name asked twice
        assert set(by_name) == {d.name for d in trial_dirs(tiny_study, "search", arm)}
        for name, trial in by_name.items():
            records = read_jsonl(tiny_study / "search" / arm / name / "metrics.jsonl")
            last = records[-1]
            assert trial.user_attrs["status"] == last["status"] and trial.user_attrs["epochs"] == last["epoch"]
            if last["status"] == "ok":
                assert trial.state == TrialState.COMPLETE and trial.values == [last["triplet_r_A"]]
                assert trial.constraints["status_ok"] == 0.0
                assert trial.intermediate_values == {r["epoch"]: r["triplet_r_A"] for r in records}  # its curve
            else:
                assert trial.state == TrialState.FAIL and trial.values is None
        assert study.best_trial.user_attrs["status"] == "ok"  # diverged never best


def test_confirmation_repeats_the_selected_trial_on_fresh_seeds(tiny_study):
    tiny_study = tiny_study.dir
    for arm in ("fixed", "lr"):
        search = [info(d) for d in trial_dirs(tiny_study, "search", arm)]
        finals = {s["trial_id"]: read_jsonl(tiny_study / "search" / arm / s["trial_id"] / "metrics.jsonl")[-1] for s in search}
        ok = [s for s in search if s["status"] == "ok"]
        best = max(ok, key=lambda s: finals[s["trial_id"]]["triplet_r_A"])
        runs = [info(d) for d in trial_dirs(tiny_study, "confirm", arm)]
        assert sorted(r["seed"] for r in runs) == [1001, 1002]
        for run in runs:
            assert run["source_trial"] == best["trial_id"] and run["source_feasible"] is True
            assert run["params"] == best["params"] and run["status"] == "ok"
        results = [read_jsonl(tiny_study / "confirm" / arm / r["trial_id"] / "metrics.jsonl")[-1] for r in runs]
        assert results[0]["val_loss_unweighted"] != results[1]["val_loss_unweighted"]  # the seeds matter


def test_state_and_status(tiny_study, capsys):
    tiny_study = tiny_study.dir
    state = json.loads((tiny_study / "state.json").read_text())
    assert state["phases"] == {"search": {"fixed": "done", "lr": "done"}, "confirm": {"fixed": "done", "lr": "done"}}
    assert state["ray_address"] is None
    lines = status_lines(tiny_study)
    assert re.search(r"^search\s+fixed\s+done\s+2\s+0\s+0\s+0\s+0\s+2\s+0\.\d{4}", "\n".join(lines), re.M)
    assert re.search(r"^search\s+lr\s+done\s+1\s+0\s+1\s+0\s+0\s+2\s", "\n".join(lines), re.M)
    assert re.search(r"^confirm\s+lr\s+done\s+2\s+0\s+0\s+0\s+0\s+2\s", "\n".join(lines), re.M)
    assert main(["study", "status", str(tiny_study)]) == 0
    assert capsys.readouterr().out.splitlines() == lines


def test_killed_study_resumed_without_rerunning_or_losing_trials(tiny_study):
    assert tiny_study.resumed.returncode == 0, tiny_study.resumed.stderr[-2000:]
    assert "WARNING" not in tiny_study.resumed.stderr, tiny_study.resumed.stderr[-2000:]  # Ray's start, unannounced
    assert tiny_study.in_flight, "the driver was not killed while a trial was between epochs"
    phases = tiny_study.killed_state["phases"]
    assert any(state == "running" for arms in phases.values() for state in arms.values())
    before, after = tiny_study.before, finished_trials(tiny_study.dir)
    assert 1 <= len(before) < len(after) == 8  # 2 + 2 search trials, 2 x 2 confirmation runs
    for trial_id, files in before.items():
        assert after[trial_id] == files  # a finished trial never reran: same files, same mtimes
    for trial_dir, text in tiny_study.in_flight.items():  # continued from its trainer.pt, nothing recomputed
        after_text = (trial_dir / "metrics.jsonl").read_text()
        assert after_text.startswith(text) and after_text.count("\n") == 2  # epoch 1 as measured before the kill
        assert info(trial_dir)["status"] in ("ok", "diverged") and not (trial_dir / "trainer.pt").exists()
        assert info(trial_dir)["restarts"] <= 1  # 0 when it finished its last epoch just before the kill
    progress = [re.match(r"(\w+) (\w+): (\d+)/(\d+) trials", line) for line in tiny_study.resumed.stdout.splitlines()]
    counts = [(int(m[3]), int(m[4])) for m in progress if m]
    assert counts and all(done <= total for done, total in counts)  # a resumed study counts each trial once
    assert "study 8/8" in tiny_study.resumed.stdout
