"""Kill anywhere, resume, nothing lost: one small study run from the command line is SIGKILLed (the driver with
its local Ray and workers) at four moments read from its directory and resumed after each, then ``diffctl
export`` is SIGKILLed mid-run; the finished study must hold exactly its budget, with no finished trial rerun,
every record intact, a complete report and tables, and an export that ``diffctl reproduce`` accepts.

The moments (each detected by polling the trial files; a moment the study ran past before the kill fails the
test rather than counting as survived):

- ``search``: some search trial of the first arm (``fixed``, 3 trials, 2 at a time) final, not all;
- ``between arms``: every search trial of ``fixed`` final, the second arm's (``lr``) not all;
- ``confirmation``: every search trial final, some confirmation run started, not all final;
- ``analysis``: trials.parquet written by the analysis the command line runs after the study, report.md not
  yet (the resume must redo the analysis);
- ``export``: ``diffctl export`` alive, killed; its ``--out`` file is absent, or the previous version intact.

Every driver runs with a private Ray temporary directory (``RAY_TMPDIR``), so that the test can check that no
process of a killed session survives and measure what trial workers wrote to Ray's session logs.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import pandas as pd
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from diffctl.config import load_config
from diffctl.files import read_jsonl
from study.phases.search import ORPHAN
from study.status import status_lines
from study.trialdir import FINISHED
from study_kill import finished_trials, in_flight_trials, kill, poll_until, start_diffctl, trial_files
from tiny_specs import TINY, diffctl_env, run_diffctl, spec_variant, write_spec

pytestmark = pytest.mark.slow

# The tiny study with a third search trial for the first arm: with 2 at a time, it runs alone after the first
# two ended, which opens the "some of the first arm's trials final, not all" window for one whole trial.
SPEC = spec_variant(name="kill", arms={**TINY["arms"], "fixed": {**TINY["arms"]["fixed"], "budget": 3}})
BUDGET = {arm: a["budget"] for arm, a in SPEC["arms"].items()}
CONFIRM_RUNS = SPEC["confirm"]["top_k"] * len(SPEC["confirm"]["seeds"])
JOURNAL_LOCK = "optuna.journal.lock"  # Optuna's default lock file, which a killed driver would leave behind
WORKER_LOG_BOUND = 20_000  # bytes of worker stdout/stderr per trial
PASSED: set[str] = set()  # the checks below that passed; a kill point survived when all of its checks did
STUDY_CHECKS = {"hit", "budget", "no rerun", "records", "report"}


def _final(study_dir: Path, phase: str, arm: str | None = None) -> int:
    """Trials of ``phase`` (and ``arm``) whose trial.json has a final status."""
    paths = study_dir.glob(f"{phase}/{arm or '*'}/*/trial.json")
    return sum(json.loads(p.read_text())["status"] in FINISHED for p in paths)


def _started(study_dir: Path, phase: str) -> int:
    return len(list(study_dir.glob(f"{phase}/*/*/trial.json")))


MOMENTS = {
    "search": lambda d: 0 < _final(d, "search", "fixed") < BUDGET["fixed"],
    "between arms": lambda d: _final(d, "search", "fixed") == BUDGET["fixed"]
    and _final(d, "search", "lr") < BUDGET["lr"],
    "confirmation": lambda d: _final(d, "search") == sum(BUDGET.values())
    and _started(d, "confirm") >= 1
    and _final(d, "confirm") < CONFIRM_RUNS * len(BUDGET),
    "analysis": lambda d: (d / "trials.parquet").exists() and not (d / "report.md").exists(),
}


def _processes_with(env_entry: bytes) -> list[int]:
    """Pids of the processes whose environment holds ``env_entry`` (e.g. b"RAY_TMPDIR=/tmp/rk...")."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if env_entry in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except OSError:  # exited meanwhile, or not ours
            pass
    return found


@pytest.fixture(scope="module")
def killed_study(tmp_path_factory):
    """Run the study, kill it at each moment of MOMENTS in turn, resuming after each kill, then let the last
    resume finish. Returns what was seen at each kill and the final outcome."""
    root = tmp_path_factory.mktemp("kill")
    ray_tmp = tempfile.mkdtemp(prefix="rk", dir="/tmp")  # short: Ray's socket paths must stay < 108 bytes
    env = dict(diffctl_env(), RAY_TMPDIR=ray_tmp)
    study_dir, log = root / "results" / SPEC["name"], root / "driver.log"
    start = time.perf_counter()
    spec = write_spec(root, SPEC)
    driver = start_diffctl("study", "run", str(spec), "--storage", str(root / "results"), env=env, log=log)
    kills = []
    try:
        for moment, condition in MOMENTS.items():
            hit = poll_until(driver, lambda: condition(study_dir))
            kill(driver)
            kills.append(SimpleNamespace(
                moment=moment, hit=hit, at_s=time.perf_counter() - start,
                finished=finished_trials(study_dir), in_flight=in_flight_trials(study_dir),
                state=json.loads((study_dir / "state.json").read_text()),
                leftover=_processes_with(f"RAY_TMPDIR={ray_tmp}".encode()),
                journal_lock=(study_dir / JOURNAL_LOCK).exists(),
            ))  # fmt: skip
            if not hit:
                break
            driver = start_diffctl("study", "resume", str(study_dir), env=env, log=log)
        returncode = driver.wait(timeout=240) if kills[-1].hit else None
    finally:
        kill(driver)
    seconds = time.perf_counter() - start
    print(f"study killed {len(kills)} times and resumed: {seconds:.1f} s")
    yield SimpleNamespace(dir=study_dir, kills=kills, returncode=returncode, log=log, ray_tmp=Path(ray_tmp), env=env)
    shutil.rmtree(ray_tmp, ignore_errors=True)


def _trial_dirs(study_dir: Path, phase: str, arm: str) -> list[Path]:
    return [p.parent for p in trial_files(study_dir) if p.parent.parent == study_dir / phase / arm]


def _abandoned(trial_dir: Path) -> bool:
    info = json.loads((trial_dir / "trial.json").read_text())
    return info["status"] == "error" and info["reason"].startswith("abandoned")


def test_each_kill_point_hit_and_resumed(killed_study):
    for k in killed_study.kills:
        assert k.hit, f"kill point {k.moment!r} missed: the study ran past it before the kill (state {k.state})"
        assert k.leftover == [], f"processes of the killed {k.moment!r} session survived: {k.leftover}"
    assert [k.moment for k in killed_study.kills] == list(MOMENTS)
    assert killed_study.returncode == 0, killed_study.log.read_text()[-3000:]
    deadline = time.monotonic() + 15  # a finished driver's Ray takes a moment to exit
    while _processes_with(f"RAY_TMPDIR={killed_study.ray_tmp}".encode()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_with(f"RAY_TMPDIR={killed_study.ray_tmp}".encode()) == []
    for k in killed_study.kills:
        print(f"kill at {k.moment:13} after {k.at_s:5.1f} s: {len(k.finished)} trials final, "
              f"{len(k.in_flight)} between epochs")
    PASSED.add("hit")


def test_resume_does_not_wait_for_the_killed_drivers_lock(killed_study):
    """A driver is often killed while it appends to the Optuna journal (the moments above follow a trial's end,
    when it tells Optuna). Optuna's default lock file would outlive it and make the resumed driver wait 30 s
    (Optuna's grace period) before taking the lock over; the study's flock-based lock is released by the
    kernel."""
    stale = [k.moment for k in killed_study.kills if k.journal_lock]
    waited = killed_study.log.read_text().count("Forcibly releasing the lock file")
    print(f"kills that left the Optuna journal lock: {stale or 'none'}; resumes that waited for it: {waited}")
    assert waited == 0, f"{waited} resume(s) waited 30 s for the journal lock of a driver killed at {stale}"


def test_no_warning_in_any_drivers_output(killed_study):
    """Resuming after each kill (a tell made or not, a searcher snapshot taken or not) leaves the libraries
    nothing to warn about: the output of every driver, killed or finishing, has progress lines only."""
    lines = killed_study.log.read_text().splitlines()
    flagged = [line for line in lines if any(word in line for word in ("WARNING", "ERROR", "Traceback"))]
    assert flagged == [], "\n".join(flagged[:10])


def test_trial_total_equals_budget(killed_study):
    """Every trial a killed driver had given is given again under its name after the resume (and continues from its
    files): no trial is abandoned and replaced, the budget is spent exactly, Optuna holds each search trial once."""
    study_dir = killed_study.dir
    storage = JournalStorage(JournalFileBackend(str(study_dir / "optuna.journal")))
    for arm, budget in BUDGET.items():
        search, confirm = _trial_dirs(study_dir, "search", arm), _trial_dirs(study_dir, "confirm", arm)
        assert not [d for d in search + confirm if _abandoned(d)]
        trials = optuna.load_study(study_name=arm, storage=storage).trials  # COMPLETE, or FAIL where it diverged
        orphans = [t for t in trials if t.user_attrs.get("status") == ORPHAN]  # an ask the kill cut in half
        assert all(t.state == optuna.trial.TrialState.FAIL for t in orphans)
        told = [t for t in trials if t.user_attrs.get("status") != ORPHAN]
        assert len(search) == budget and len(told) == budget and all(t.state.is_finished() for t in told), (
            f"{arm}: {len(search)} finished search trials ({len(told)} told to Optuna) for a budget of {budget}"
        )
        assert len(confirm) == CONFIRM_RUNS, f"{arm}: {len(confirm)} confirmation runs, expected {CONFIRM_RUNS}"
        assert sorted(t.user_attrs["name"] for t in told) == sorted(d.name for d in search)
    lines = status_lines(study_dir)
    for line in lines[2:2 + 2 * len(BUDGET)]:
        phase, arm, _, *counts, total = line.split()[:9]
        assert sum(map(int, counts)) == int(total) == (BUDGET[arm] if phase == "search" else CONFIRM_RUNS), line
    assert not any(line.startswith("not counted, started by a killed driver") for line in lines)
    PASSED.add("budget")


def test_no_finished_trial_reran(killed_study):
    now = finished_trials(killed_study.dir)
    seen: dict[str, tuple] = {}
    for k in killed_study.kills:
        for trial_id, files in k.finished.items():
            assert seen.setdefault(trial_id, files) == files, f"{trial_id} changed after it had finished"
    for trial_id, files in seen.items():
        assert now[trial_id] == files, f"{trial_id} reran: metrics.jsonl or trial.json rewritten"
    continued = 0
    for k in killed_study.kills:
        for trial_dir, text in k.in_flight.items():  # continued from its trainer.pt, nothing recomputed
            assert (trial_dir / "metrics.jsonl").read_text().startswith(text)
            continued += 1
    print(f"finished trials untouched: {len(seen)}, trials continued from their saved state: {continued}")
    PASSED.add("no rerun")


def test_every_record_intact(killed_study):
    for path in trial_files(killed_study.dir):
        info = json.loads(path.read_text())
        records = read_jsonl(path.with_name("metrics.jsonl"))  # every line parses
        assert [r["epoch"] for r in records] == list(range(1, info["epochs_done"] + 1)), path
        assert info["status"] in FINISHED, path
        assert not path.with_name("trainer.pt").exists(), f"{path.parent}: saved state left behind ({info['reason']})"
        if not _abandoned(path.parent):
            assert info["status"] in ("ok", "diverged") and records[-1]["status"] == info["status"], path
            assert info["status"] == "diverged" or info["epochs_done"] == SPEC["epochs"], path
        load_config(path.with_name("config.yaml"))
    PASSED.add("records")


def test_report_and_tables_complete(killed_study):
    study_dir = killed_study.dir
    trials = len(trial_files(study_dir))
    assert len(pd.read_parquet(study_dir / "trials.parquet")) == trials
    epochs = sum(json.loads(p.read_text())["epochs_done"] for p in trial_files(study_dir))
    assert len(pd.read_parquet(study_dir / "epochs.parquet")) == epochs
    report = (study_dir / "report.md").read_text()
    assert report.startswith(f"# Study `{SPEC['name']}`") and f"\n{trials} trials, " in report
    assert report.rstrip().endswith("(one row per trial-epoch)")  # the last section was written
    links = [line.split("](", 1)[1].split(")", 1)[0] for line in report.splitlines() if "](" in line]
    assert links and all((study_dir / link).is_file() for link in links)
    PASSED.add("report")


def _export_killed(study_dir: Path, out: Path, after_s: float, env: dict) -> bool:
    """Run ``diffctl export`` and SIGKILL it ``after_s`` seconds in; False when it had already exited."""
    process = start_diffctl("export", str(study_dir), "--out", str(out), env=env)
    deadline = time.monotonic() + after_s
    alive = poll_until(process, lambda: time.monotonic() >= deadline, timeout=after_s + 5)
    kill(process)
    return alive


def _same_export(path: Path, previous: dict) -> bool:
    """Whether ``path`` is a complete export equal to ``previous`` but for its creation time."""
    data = load_config(path).to_dict()
    data["provenance"].pop("created")
    return data == previous


def test_export_killed_leaves_nothing_partial_and_reproduces(killed_study, tmp_path):
    study_dir, env = killed_study.dir, killed_study.env
    best = tmp_path / "best.yaml"
    start = time.perf_counter()
    done = run_diffctl("export", str(study_dir), "--out", str(best))
    full_s = time.perf_counter() - start
    assert done.returncode == 0, done.stderr
    exported, previous = best.read_bytes(), load_config(best).to_dict()
    assert previous["provenance"]["study_dir"] == study_dir.name  # outside the working directory: its name alone
    previous["provenance"].pop("created")
    # Killed early (before it wrote): no file. Killed late, over an existing export: the previous version
    # unchanged, or (killed after its rename, while it printed) the complete new one.
    killed = [f for f in (0.3, 0.5) if _export_killed(study_dir, tmp_path / "fresh.yaml", f * full_s, env)]
    assert killed, f"every export finished before the kill (a full export takes {full_s:.1f} s)"
    assert not (tmp_path / "fresh.yaml").exists()
    late = next((f for f in (0.9, 0.8, 0.7, 0.6) if _export_killed(study_dir, best, f * full_s, env)), None)
    assert late is not None, "every export finished before the late kill"
    unchanged = best.read_bytes() == exported
    assert unchanged or _same_export(best, previous)
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == ["best.yaml"]
    reproduced = run_diffctl("reproduce", str(best))
    assert reproduced.returncode == 0, reproduced.stdout + reproduced.stderr
    print(f"export ({full_s:.1f} s) killed at {killed[0]:.0%} (no file) and at {late:.0%} of its run "
          f"({'previous version intact' if unchanged else 'new version complete'}); reproduce exit 0")
    PASSED.add("export")


def test_trial_workers_print_little(killed_study):
    logs = list(killed_study.ray_tmp.glob("ray/session_*/logs/worker-*.out")) + list(
        killed_study.ray_tmp.glob("ray/session_*/logs/worker-*.err")
    )
    assert logs, "no Ray worker log found under RAY_TMPDIR"
    written = sum(p.stat().st_size for p in logs)
    trials = len(trial_files(killed_study.dir))
    sessions = len({p.parent.parent for p in logs})
    print(f"Ray worker logs: {written} B in {len(logs)} files of {sessions} sessions, {written / trials:.0f} B/trial")
    assert written / trials < WORKER_LOG_BOUND


def test_kill_points_survived(killed_study):
    survived = [k.moment for k in killed_study.kills if k.hit] if STUDY_CHECKS <= PASSED else []
    survived += ["export"] if "export" in PASSED else []
    print(f"kill points survived: {len(survived)}/{len(MOMENTS) + 1}")
    assert survived == [*MOMENTS, "export"]
