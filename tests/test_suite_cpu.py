"""benchmarks/suite_cpu.py: a command's CPU time per process, from the kernel's process accounting, named by what
each process runs and kept in the command's tree."""

from __future__ import annotations

import os
import sys

import pytest

from benchmarks.suite_cpu import NESTED, Process, _comp_t, attribute, kind_of, measure, merged, report
from tiny_specs import DIFFCTL

SPIN = "import time\nend = time.process_time() + 0.4\nwhile time.process_time() < end: pass"


def test_comp_t_and_kinds():
    assert _comp_t(0x1FFF) == 8191 and _comp_t((1 << 13) | 5) == 40 and _comp_t((2 << 13) | 3) == 192
    assert kind_of(f"{DIFFCTL} study run spec.yaml --storage r") == "diffctl study run"
    assert kind_of(f"{DIFFCTL} export tiny --out best.yaml") == "diffctl export"
    assert kind_of("/v/bin/python -u /v/ray/_private/workers/default_worker.py --node-ip-address=1") == \
        "Ray worker (trial actors)"
    assert kind_of("/v/bin/python -u /v/ray/_private/runtime_env/agent/main.py --log-dir=/t "
                   "--worker-path=/v/ray/_private/workers/default_worker.py") == "Ray services"
    assert kind_of("/v/ray/core/src/ray/raylet/raylet --raylet_socket_name=/t/raylet") == "Ray services"
    assert kind_of("/v/bin/python -u -c import sys;exec(eval(sys.stdin.readline()))") == "pytest-xdist worker"
    assert kind_of("sh -c /v/bin/diffctl config show; python spin.py") == "other"  # a shell running diffctl


def test_a_reused_pid_is_two_processes_and_a_killed_parent_keeps_its_children():
    root = Process(10, 1, 1000.0, 1.0, "python -m pytest")
    sampled = [
        root,
        Process(100, 10, 1001.0, 0.5, f"{DIFFCTL} study run spec.yaml"),  # a driver, later killed
        Process(200, 100, 1002.0, 3.0, "/v/bin/python /v/ray/_private/workers/default_worker.py"),
        Process(100, 1, 1500.0, 9.0, "sshd: another user's"),  # pid 100 again, outside the tree
    ]
    records = [
        Process(100, 10, 1001.0, 2.0),  # the driver's record: more CPU than its last sample
        Process(200, 1, 1002.0, 2.5),  # reparented to init once the driver died: first-seen parent counts
        Process(300, 200, 1003.0, 0.25),  # never sampled (short): its named ancestor's kind
        Process(100, 1, 1500.0, 9.5),  # the second pid 100
    ]
    kinds = attribute(merged(records, sampled), root)
    assert kinds == {"other": [1.0], "diffctl study run": [2.0], "Ray worker (trial actors)": [3.0],
                     "Ray worker (trial actors) (child)": [0.25]}


@pytest.mark.skipif(os.geteuid() != 0, reason="process accounting needs root")
@pytest.mark.skipif(bool(os.environ.get(NESTED)), reason="a suite_cpu measures this run: accounting is global")
def test_each_process_of_the_tree_is_counted_by_kind(tmp_path):
    # a shell running a diffctl command, then a Python process that spins 0.4 s and starts a child that spins too
    script = tmp_path / "spin.py"
    script.write_text(f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', {SPIN!r}])\n{SPIN}\n")
    kinds, wall, _busy, code = measure(["sh", "-c", f"{DIFFCTL} config show --arm fixed > /dev/null; "
                                             f"{sys.executable} {script}"])
    assert code == 0
    assert len(kinds["diffctl config"]) == 1 and kinds["diffctl config"][0] > 0.3  # it imports the project
    spinners = [cpu for cpu in kinds["other"] if cpu >= 0.35]
    assert len(spinners) == 2, kinds  # the parent and its child, each ~0.4 s
    total = sum(sum(v) for v in kinds.values())
    assert 1.0 < total < wall * (os.cpu_count() or 1) + 0.1
    assert "diffctl config" in report(kinds, wall, 2)
