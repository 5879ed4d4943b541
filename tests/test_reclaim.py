"""CPUs that a local Ray keeps after a Tuner ended (``study.cluster.held_cpus``) and the restart that gives them
back before the next Tuner (``study.phases.pbt.population.reclaim_cpus``).

Ray sometimes keeps a CPU of a PBT member whose worker was still starting when its Tuner removed the placement
group; the next Tuner then runs one trial at a time. That race cannot be provoked on demand, so a held CPU is
made here the plain way: an actor that reserves one CPU and stays alive.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import ray

from study.cluster import held_cpus
from study.phases.pbt.population import reclaim_cpus
from study.tuners import connect
from study.protocol import load_spec
from study.state import new_state, write_state
from tiny_specs import TINY_SPEC

pytestmark = pytest.mark.slow


@ray.remote(num_cpus=1)
class _Holder:
    def ping(self) -> int:
        return os.getpid()


class _Notices:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def notice(self, line: str) -> None:
        self.lines.append(line)


def _study_dir(tmp_path: Path, address: str | None) -> Path:
    directory = tmp_path / (address or "local").replace(":", "_")
    directory.mkdir(exist_ok=True)
    write_state(directory, new_state("tiny", address))
    return directory


def test_a_held_cpu_restarts_a_local_ray_only(tmp_path):
    spec = load_spec(TINY_SPEC)
    connect(spec, None)
    try:
        cpus = ray.cluster_resources()["CPU"]
        node = ray.get_runtime_context().get_node_id()
        notices = _Notices()
        # every CPU free: left running
        assert held_cpus(timeout_s=0.0) == 0.0
        reclaim_cpus(_study_dir(tmp_path, None), spec, connect, notices)
        assert ray.get_runtime_context().get_node_id() == node and notices.lines == []
        # a CPU held on a cluster: never restarted (other jobs hold CPUs there too)
        holder = _Holder.remote()
        pid = ray.get(holder.ping.remote())
        assert held_cpus(timeout_s=0.5) == 1.0
        reclaim_cpus(_study_dir(tmp_path, "127.0.0.1:6379"), spec, connect, notices)
        assert ray.get(holder.ping.remote()) == pid and notices.lines == []
        # a CPU held on the local Ray: restarted, every CPU free again
        reclaim_cpus(_study_dir(tmp_path, None), spec, connect, notices)
        assert ray.is_initialized() and ray.get_runtime_context().get_node_id() != node
        assert ray.cluster_resources()["CPU"] == cpus
        assert held_cpus(timeout_s=0.0) == 0.0
        assert len(notices.lines) == 1 and "held 1 CPU(s)" in notices.lines[0]
    finally:
        ray.shutdown()
