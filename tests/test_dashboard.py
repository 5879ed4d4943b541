"""``diffctl study dashboard``: optuna-dashboard serves a study's journal, one Optuna study per arm with the
journal's trials, and never writes it (a request that would is refused 403 in one log line); bad input (not a
study directory, a port in use) is one line, exit 2.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import select
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from wsgiref.util import setup_testing_defaults

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna_dashboard import wsgi

from study.dashboard import READ_ONLY, refuse_writes
from study_fixture import SPEC, copy_study
from tiny_specs import DIFFCTL, diffctl_env, run_diffctl

slow = pytest.mark.slow  # the tiny study is a real study run (built once per test session)

# optuna-dashboard 0.21.0's routes that change a study (or, for the RDB migration, a storage): all refused.
WRITES = [
    "POST /api/studies",
    "POST /api/studies/<study_id:int>/rename",
    "DELETE /api/studies/<study_id:int>",
    "PUT /api/studies/<study_id:int>/note",
    "POST /api/studies/<study_id:int>/preference",
    "PUT /api/studies/<study_id:int>/preference_feedback_component",
    "DELETE /api/studies/<study_id:int>/preference/<history_id>",
    "POST /api/studies/<study_id:int>/preference/<history_id>",
    "POST /api/trials/<trial_id:int>/tell",
    "POST /api/trials/<trial_id:int>/user-attrs",
    "POST /api/studies/<study_id:int>/<trial_id:int>/skip",
    "PUT /api/studies/<study_id:int>/<trial_id:int>/note",
    "POST /incompatible-rdb-schema",
    "POST /api/artifacts/<study_id:int>/<trial_id:int>",
    "POST /api/artifacts/<study_id:int>",
    "DELETE /api/artifacts/<study_id:int>/<trial_id:int>/<artifact_id:re:[0-9a-fA-F-]+>",
    "DELETE /api/artifacts/<study_id:int>/<artifact_id:re:[0-9a-fA-F-]+>",
]


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


def _call(app, method: str, path: str, body: dict | None = None) -> tuple[str, bytes]:
    """One in-process WSGI request; its status line and body."""
    data = json.dumps(body).encode() if body is not None else b""
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "CONTENT_TYPE": "application/json",
               "CONTENT_LENGTH": str(len(data)), "wsgi.input": io.BytesIO(data)}  # fmt: skip
    setup_testing_defaults(environ)
    answer = {}
    chunks = app(environ, lambda status, headers, exc_info=None: answer.update(status=status))
    return answer["status"], b"".join(chunks)


def _concrete(rule: str) -> str:
    """A path a Bottle rule matches (an id 0, a hexadecimal artifact id, a name x)."""
    rule = rule.replace("<:re:(/.*)?>", "")
    rule = re.sub(r"<\w+:int>", "0", rule)
    rule = re.sub(r"<\w+:re:[^>]+>", "0a", rule)
    return re.sub(r"<\w+(:path)?>", "x", rule)


def test_every_route_that_writes_is_refused_before_optuna_dashboard_runs(tmp_path, caplog):
    storage = optuna.storages.InMemoryStorage()
    optuna.create_study(storage=storage, study_name="arm")
    dashboard = wsgi(storage)
    reached = []

    def recorded(environ, start_response):
        reached.append(f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}")
        return dashboard(environ, start_response)

    journal = tmp_path / "optuna.journal"
    app = refuse_writes(recorded, journal)
    routes = [f"{route.method} {route.rule}" for route in dashboard.routes]
    assert sorted(r for r in routes if not r.startswith(("GET ", "POST /api/llm/"))) == sorted(WRITES)
    with caplog.at_level(logging.WARNING, logger="study.dashboard"):
        for route in WRITES:
            method, rule = route.split(" ", 1)
            status, body = _call(app, method, _concrete(rule), {"study_name": "renamed", "state": "Complete"})
            assert status == "403 Forbidden", route
            assert json.loads(body) == {"reason": f"{journal} {READ_ONLY}"}
        status, _ = _call(app, "PATCH", "/api/studies/0")  # no such route: refused all the same
        assert status == "403 Forbidden"
    assert reached == []  # optuna-dashboard never saw a refused request
    logged = [r for r in caplog.records if r.name == "study.dashboard"]
    assert [r.getMessage() for r in logged][:2] == [
        f"refused POST /api/studies: {journal} {READ_ONLY}",
        f"refused POST /api/studies/0/rename: {journal} {READ_ONLY}",
    ]
    assert len(logged) == len(WRITES) + 1 and not any(r.exc_info for r in logged)
    assert [s.study_name for s in storage.get_all_studies()] == ["arm"]
    # what only reads still reaches optuna-dashboard: the study list, and an LLM query (no provider here: 400)
    status, body = _call(app, "GET", "/api/studies")
    assert status.startswith("200") and len(json.loads(body)["study_summaries"]) == 1
    status, body = _call(app, "POST", "/api/llm/trial_filter_query", {"user_query": "best"})
    assert status.startswith("400") and json.loads(body) == {"reason": "No access to the LLM provider."}
    assert reached == ["GET /api/studies", "POST /api/llm/trial_filter_query"]


def _refused(request: urllib.request.Request) -> tuple[int, dict]:
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(request, timeout=60)
    return error.value.code, json.load(error.value)


@slow
def test_dashboard_serves_one_study_per_arm_and_never_writes(tiny_study, tmp_path):
    study_dir = copy_study(tiny_study, tmp_path)
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
        # A change asked through the dashboard (a delete, a rename) is refused and leaves the journal as it was.
        study = f"{base}/api/studies/{studies[0]['study_id']}"
        delete = urllib.request.Request(study, method="DELETE")
        rename = urllib.request.Request(f"{study}/rename", data=json.dumps({"study_name": "renamed"}).encode(),
                                        headers={"Content-Type": "application/json"}, method="POST")  # fmt: skip
        reason = {"reason": f"{journal} is read-only here: diffctl study dashboard never changes a study"}
        assert _refused(delete) == (403, reason)
        assert _refused(rename) == (403, reason)
        after = _get(f"{base}/api/studies")["study_summaries"]
        assert sorted(s["study_name"] for s in after) == sorted(SPEC["arms"])
    finally:
        server.send_signal(signal.SIGINT)
        try:
            rc = server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            raise
    stderr = server.stderr.read()
    assert rc == 130 and "Traceback" not in stderr, stderr[-2000:]
    study_id = studies[0]["study_id"]
    assert [line for line in stderr.splitlines() if "read-only" in line] == [  # one line per refusal
        f"refused DELETE /api/studies/{study_id}: {journal} {READ_ONLY}",
        f"refused POST /api/studies/{study_id}/rename: {journal} {READ_ONLY}",
    ]
    assert _sha(journal) == before and sorted(p.name for p in study_dir.iterdir()) == files_before
    print(f"\ndashboard served {counts} trials per arm, read-only")


@slow
def test_dashboard_bad_input_is_one_line(tiny_study, tmp_path):
    run = run_diffctl("study", "dashboard", str(tmp_path))
    assert (run.returncode, run.stdout) == (2, "")
    assert run.stderr.splitlines() == [f"diffctl: error: {tmp_path}: not a study directory (no state.json)"]
    study_dir = copy_study(tiny_study, tmp_path)
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
