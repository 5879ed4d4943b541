"""A study on a Ray cluster of two nodes on this machine (``ray.cluster_utils.Cluster``: a head and a second
node, 1 CPU each): the storage probe names the node that cannot write the study directory, and a study that
loses its second node (killed, not drained) while a trial runs there finishes with its budget exactly spent,
the lost trial continued on the head from its ``trainer.pt``.

Ray declares a node dead after ``health_check_failure_threshold`` missed health checks ``health_check_period_ms``
apart (5 x 3 s by default); the head here checks every 0.5 s and gives up after 3. The cluster's address file
goes into a private ``RAY_TMPDIR``, so that no other Ray started on this machine meanwhile (``ray.init()``
without an address reads that file) joins it. Each node's processes start in a directory of their own, which
is what the probe test uses: ``/proc/self/cwd/...`` is a path that each node resolves to a different place, as a
node-local storage path would be on separate machines.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import pandas as pd
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from ray.cluster_utils import Cluster

from study_kill import poll_until, start_diffctl
from tiny_specs import DIFFCTL, TINY, cluster_env, spec_variant, write_spec

pytestmark = pytest.mark.slow
EPOCHS, BUDGET = 3, 2  # 2 search trials, 1 CPU per node: one starts on each node
HEALTH_CHECKS = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500, "health_check_timeout_ms": 500,
                 "health_check_failure_threshold": 3}  # fmt: skip


@pytest.fixture(scope="module")
def two_nodes():
    root = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))  # short: Ray's socket paths must stay < 108 bytes
    views = SimpleNamespace(head=root / "head_cwd", second=root / "second_cwd")
    views.head.mkdir()
    views.second.mkdir()
    with pytest.MonkeyPatch.context() as env:
        for key, value in {**cluster_env(), "RAY_TMPDIR": str(root)}.items():
            env.setenv(key, value)
        cluster = Cluster(shutdown_at_exit=True)
        try:
            with contextlib.chdir(views.head):
                head = cluster.add_node(num_cpus=1, include_dashboard=False, _system_config=HEALTH_CHECKS)
            with contextlib.chdir(views.second):
                second = cluster.add_node(num_cpus=1)
            yield SimpleNamespace(cluster=cluster, address=cluster.address, head=head, second=second, views=views)
        finally:
            cluster.shutdown()
            shutil.rmtree(root, ignore_errors=True)


def _diffctl(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([DIFFCTL, *args], capture_output=True, text=True, timeout=300, env=cluster_env(), cwd=cwd)


def test_storage_probe_names_the_node_that_cannot_write(two_nodes, tmp_path):
    """``/proc/self/cwd/results`` is ``head_cwd/results`` for the driver and the head's workers, but a missing
    ``second_cwd/results`` on the second node: the study refuses it before creating anything."""
    spec = write_spec(tmp_path, spec_variant(name="probe"))
    storage = "/proc/self/cwd/results"
    run = _diffctl("study", "run", str(spec), "--storage", storage, "--address", two_nodes.address,
                   cwd=two_nodes.views.head)  # fmt: skip
    assert run.returncode == 2, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    last = run.stderr.strip().splitlines()[-1]
    node = f"node {two_nodes.second.node_id} ({socket.gethostname()})"
    assert last.startswith(f"diffctl: error: --storage {storage}: {node} cannot write {storage}/probe (FileNotFoundError")
    assert last.endswith("on a cluster of several nodes the storage must be a path every node sees")
    assert two_nodes.head.node_id not in last
    # Nothing left behind: the driver's study directory was made for the probe only, and removed with it.
    assert list(two_nodes.views.head.iterdir()) == [] and list(two_nodes.views.second.iterdir()) == []


def _running_on(study_dir: Path, node_id: str) -> list[dict]:
    """trial.json of the trials whose current session runs on ``node_id`` with an epoch done and more to go."""
    found = []
    for path in study_dir.glob("*/*/*/trial.json"):
        try:
            info = json.loads(path.read_text())
        except ValueError:
            continue  # never half-written (atomic), but a reader may race the rename on some file systems
        if info["status"] == "running" and info["nodes"][-1]["node_id"] == node_id and 1 <= info["epochs_done"] < EPOCHS:
            found.append(info)
    return found


@pytest.fixture(scope="module")
def node_loss(two_nodes, tmp_path_factory):
    """The study run against the two nodes; the second node is removed (processes SIGKILLed) once a trial there
    has finished an epoch and has more to go."""
    root = tmp_path_factory.mktemp("node_loss")
    spec = spec_variant(name="node_loss", epochs=EPOCHS, confirm={"top_k": 1, "seeds": [1001]},
                        arms={"fixed": {**TINY["arms"]["fixed"], "budget": BUDGET}})  # fmt: skip
    study_dir = root / "results" / "node_loss"
    log = root / "study.log"
    start = time.monotonic()
    driver = start_diffctl("study", "run", str(write_spec(root, spec)), "--storage", str(root / "results"),
                           "--address", two_nodes.address, env=cluster_env(), log=log)  # fmt: skip
    lost: list[dict] = []

    def lose_second_node() -> bool:
        lost.extend(_running_on(study_dir, two_nodes.second.node_id))
        if lost:
            two_nodes.cluster.remove_node(two_nodes.second, allow_graceful=False)
        return bool(lost)

    removed = poll_until(driver, lose_second_node, timeout=240)
    driver.wait(timeout=240)
    return SimpleNamespace(dir=study_dir, spec=spec, removed=removed, lost=lost, rc=driver.returncode,
                           log=log.read_text(), seconds=time.monotonic() - start)  # fmt: skip


def _infos(study_dir: Path, phase: str) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in study_dir.glob(f"{phase}/fixed/*/trial.json")}


def test_trials_of_a_lost_node_continue_on_the_head(node_loss, two_nodes):
    assert node_loss.removed, "no trial was seen running on the second node: " + node_loss.log[-2000:]
    assert node_loss.rc == 0, node_loss.log[-3000:]
    head, second = two_nodes.head.node_id, two_nodes.second.node_id
    infos = {**_infos(node_loss.dir, "search"), **_infos(node_loss.dir, "confirm")}
    lost_ids = [info["trial_id"] for info in node_loss.lost]
    for trial_id in lost_ids:  # each continued on the head from its trainer.pt and finished
        info = infos[trial_id]
        assert info["status"] == "ok" and info["epochs_done"] == EPOCHS and info["restarts"] == 1
        assert [s["node_id"] for s in info["nodes"]] == [second, head]
        assert {s["hostname"] for s in info["nodes"]} == {socket.gethostname()}
    for trial_id, info in infos.items():  # no epoch recomputed, none lost, no trial state left behind
        epochs = [json.loads(line)["epoch"] for line in (node_loss.dir / info["phase"] / "fixed" / trial_id /
                                                          "metrics.jsonl").read_text().splitlines()]  # fmt: skip
        assert epochs == list(range(1, EPOCHS + 1)), trial_id
        assert not (node_loss.dir / info["phase"] / "fixed" / trial_id / "trainer.pt").exists()
        if trial_id not in lost_ids:
            assert info["status"] == "ok" and info["restarts"] == 0 and len(info["nodes"]) == 1
    # The trials were spread over both nodes; after the loss, only the head ran trials.
    assert {info["nodes"][0]["node_id"] for info in infos.values()} == {head, second}
    ended = ", ".join(f"{infos[t]['trial_id']}: {infos[t]['status']} after {infos[t]['restarts']} restart "
                      f"({infos[t]['epochs_done']} epochs)" for t in lost_ids)  # fmt: skip
    print(f"\nsecond node lost with {len(lost_ids)} trial(s) running on it; {ended}; study took "
          f"{node_loss.seconds:.0f} s")  # fmt: skip
    assert len(lost_ids) == 1  # 1 CPU on the second node: one trial at a time


def test_budget_exactly_spent_and_report_complete(node_loss):
    assert node_loss.rc == 0, node_loss.log[-3000:]
    search, confirm = _infos(node_loss.dir, "search"), _infos(node_loss.dir, "confirm")
    assert len(search) == BUDGET and len(confirm) == 1  # the budget, and top_k x seeds
    storage = JournalStorage(JournalFileBackend(str(node_loss.dir / "optuna.journal")))
    trials = optuna.load_study(study_name="fixed", storage=storage).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * BUDGET
    assert sorted(t.user_attrs["name"] for t in trials) == sorted(search)  # its slot's name, each once
    assert len({t.user_attrs["ray_trial_id"] for t in trials}) == BUDGET
    state = json.loads((node_loss.dir / "state.json").read_text())
    assert state["finished"] and state["phases"] == {"search": {"fixed": "done"}, "confirm": {"fixed": "done"}}
    table = pd.read_parquet(node_loss.dir / "trials.parquet").set_index("trial_id")
    lost = [info["trial_id"] for info in node_loss.lost]
    assert list(table.index[table["node_changes"] > 0]) == lost
    assert (table.loc[lost, "first_node"] != table.loc[lost, "nodes"].str.split(",").str[-1]).all()
    assert table["hosts"].notna().all() and table["restarted"].sum() == len(lost)
    report = (node_loss.dir / "report.md").read_text()
    assert report.count("1 restart(s), then **ok**") == len(lost)
