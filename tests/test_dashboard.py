"""``diffctl study dashboard``: optuna-dashboard serves a study's journal, one Optuna study per arm with the
journal's trials, and never writes it; bad input (not a study directory, a port in use) is one line, exit 2.
"""

from __future__ import annotations

import hashlib
import json
import select
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from study_fixture import SPEC, make_tiny_study
from tiny_specs import DIFFCTL, diffctl_env, run_diffctl

pytestmark = pytest.mark.slow  # the tiny study is a real study run (built once per test session)


def _start_dashboard(study_dir: Path) -> tuple[subprocess.Popen, str]:
    """Start the dashboard on a free loopback port; return it and its base URL (read from its first line)."""
    server = subprocess.Popen([DIFFCTL, "study", "dashboard", str(study_dir), "--port", "0", "--host", "127.0.0.1"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=diffctl_env())  # fmt: skip
    ready, _, _ = select.select([server.stdout], [], [], 120)
    line = server.stdout.readline() if ready else ""
    if not line.startswith(f"optuna-dashboard of {study_dir}: http://127.0.0.1:"):
        server.kill()
        pytest.fail(f"no URL line from the dashboard: {line!r} {server.stderr.read()[-2000:]}")
    url = line.split(": ", 1)[1].split()[0]
    assert url.endswith("/dashboard/")
    return server, url.removesuffix("/dashboard/")


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.load(response)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_dashboard_serves_one_study_per_arm_and_never_writes(tmp_path):
    study_dir = make_tiny_study(tmp_path)
    journal = study_dir / "optuna.journal"
    before, files_before = _sha(journal), sorted(p.name for p in study_dir.iterdir())
    server, base = _start_dashboard(study_dir)
    try:
        studies = _get(f"{base}/api/studies")["study_summaries"]
        assert sorted(s["study_name"] for s in studies) == sorted(SPEC["arms"])
        storage = JournalStorage(JournalFileBackend(str(journal)))
        counts = {}
        for summary in studies:
            served = _get(f"{base}/api/studies/{summary['study_id']}")["trials"]
            expected = optuna.load_study(study_name=summary["study_name"], storage=storage).trials
            assert [t["number"] for t in served] == [t.number for t in expected]
            counts[summary["study_name"]] = len(served)
        assert counts == {arm: spec["budget"] for arm, spec in SPEC["arms"].items()}
        # A change asked through the dashboard is refused and leaves the journal as it was.
        refused = urllib.request.Request(f"{base}/api/studies/{studies[0]['study_id']}", method="DELETE")
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(refused, timeout=60)
        assert error.value.code == 500
        assert len(_get(f"{base}/api/studies")["study_summaries"]) == len(SPEC["arms"])
    finally:
        server.send_signal(signal.SIGINT)
        try:
            rc = server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            raise
    stderr = server.stderr.read()
    assert rc == 130 and "Traceback" not in stderr, stderr[-2000:]
    assert stderr.count("read-only here") == 1  # the refusal, logged in one line
    assert _sha(journal) == before and sorted(p.name for p in study_dir.iterdir()) == files_before
    print(f"\ndashboard served {counts} trials per arm, read-only")


def test_dashboard_bad_input_is_one_line(tmp_path):
    run = run_diffctl("study", "dashboard", str(tmp_path))
    assert (run.returncode, run.stdout) == (2, "")
    assert run.stderr.splitlines() == [f"diffctl: error: {tmp_path}: not a study directory (no state.json)"]
    study_dir = make_tiny_study(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = run_diffctl("study", "dashboard", str(study_dir), "--port", str(port))
    assert (run.returncode, run.stdout) == (2, "")
    assert run.stderr.splitlines() == [f"diffctl: error: --port {port}: already in use on 127.0.0.1"]
    run = run_diffctl("study", "dashboard", str(study_dir), "--port", "70000")
    assert run.returncode == 2
    assert run.stderr.splitlines() == ["diffctl: error: --port 70000: expected 0 to 65535 (0: any free port)"]
    (study_dir / "optuna.journal").unlink()
    run = run_diffctl("study", "dashboard", str(study_dir))
    assert run.returncode == 2
    assert run.stderr.splitlines() == [f"diffctl: error: {study_dir}: no optuna.journal (no trial has been asked for yet)"]
    assert not (study_dir / "optuna.journal").exists()  # not created by looking
