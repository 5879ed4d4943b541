"""The cluster path: a real Ray head on loopback (``ray start --head --num-cpus 2``), a study run against it with
``--address`` (and a too-large CPU request refused through ``RAY_ADDRESS``), then the head stopped.

The head is stopped with SIGTERM to the ``ray start --block`` process this test started (it shuts down the Ray
processes it launched), not with ``ray stop``, which would stop every Ray instance on the machine.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tiny_specs import DIFFCTL, TINY, cluster_env, spec_variant, write_spec

pytestmark = pytest.mark.slow
RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head():
    port = _free_port()
    temp_dir = tempfile.mkdtemp(prefix="rayh", dir="/tmp")  # short: Ray's socket paths must stay < 108 bytes
    log = Path(temp_dir) / "head.log"
    # No drain wait on SIGTERM (30 s by default): nothing runs on the head once the tests are done.
    env = dict(cluster_env(), RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0")
    with open(log, "w") as out:
        head = subprocess.Popen(
            [RAY, "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
             f"--temp-dir={temp_dir}", "--block"],
            start_new_session=True, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while "block forever" not in log.read_text():  # printed once the head is up
            assert head.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "the Ray head did not come up"
            time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        head.terminate()  # ray start --block stops the Ray processes it started
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_study_runs_on_a_cluster(ray_head, tmp_path):
    spec = spec_variant(name="on_cluster", arms={"fixed": TINY["arms"]["fixed"]})
    run = subprocess.run(
        [DIFFCTL, "study", "run", str(write_spec(tmp_path, spec)), "--storage", str(tmp_path / "results"), "--address", ray_head],
        capture_output=True, text=True, timeout=400, env=cluster_env(),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    study_dir = tmp_path / "results" / "on_cluster"
    state = json.loads((study_dir / "state.json").read_text())
    assert state["ray_address"] == ray_head
    assert state["phases"] == {"search": {"fixed": "done"}, "confirm": {"fixed": "done"}}
    infos = [json.loads(p.read_text()) for p in sorted(study_dir.glob("*/fixed/*/trial.json"))]
    assert [i["phase"] for i in infos] == ["confirm", "confirm", "search", "search"]
    assert all(i["status"] == "ok" and i["epochs_done"] == 2 for i in infos)
    assert "confirm fixed: 2/2 trials" in run.stdout


def test_cluster_refuses_more_cpus_than_a_node_has(ray_head, tmp_path):
    spec_path = write_spec(tmp_path, spec_variant(cpus_per_trial=3))
    env = dict(cluster_env(), RAY_ADDRESS=ray_head)
    run = subprocess.run(
        [DIFFCTL, "study", "run", str(spec_path), "--storage", str(tmp_path / "results")],
        capture_output=True, text=True, timeout=200, env=env,
    )  # fmt: skip
    assert run.returncode == 2
    expected = f"diffctl: error: cpus_per_trial: 3 is more than the largest node of the Ray cluster at {ray_head} has (2 CPUs)"
    assert run.stderr.strip().splitlines()[-1] == expected
    assert not (tmp_path / "results" / "tiny").exists()
