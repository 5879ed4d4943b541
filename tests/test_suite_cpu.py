"""benchmarks/suite_cpu.py: a command's CPU time per process, from the kernel's process accounting, named by what
each process runs and kept in the command's tree."""

from __future__ import annotations

import os
import sys

import pytest

from benchmarks.suite_cpu import NESTED, _comp_t, kind_of, measure, report
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
