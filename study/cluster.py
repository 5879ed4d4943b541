"""A study on a Ray cluster of several nodes: which node each session of a trial ran on, and the storage check
that comes before any trial.

Every trial writes its files (``trainer.pt``, ``metrics.jsonl``, ``trial.json``) into the study directory from
the node it runs on, and a trial restarted on another node continues from the ``trainer.pt`` the first node
wrote. So on a multi-node cluster ``--storage`` must be one directory that every node sees at the same absolute
path (a shared file system). :func:`check_storage` makes sure of it before the study starts: one tiny Ray task
per alive node, pinned to that node (``NodeAffinitySchedulingStrategy(soft=False)``), creates and removes a
file in the study directory. A node that cannot is named in a one-line :class:`InputError`, and the file
system is left as it was found (the directories made for the probe are removed again, whatever the outcome).
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

import ray
from ray.exceptions import GetTimeoutError, RayError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from diffctl.errors import InputError, one_line

RELEASE_TIMEOUT_S = 5.0  # for a Tuner's trial actors to give back their CPUs once it has ended (seen: <= 2 s)
PROBE_TIMEOUT_S = 120.0  # for every node to answer (a node starts a worker process for its probe first)
PROBE_PREFIX = ".storage-probe-"


def this_node() -> dict[str, str]:
    """The Ray node the calling process runs on: ``{"node_id", "hostname"}`` (a trial's session, a probe)."""
    return {"node_id": ray.get_runtime_context().get_node_id(), "hostname": socket.gethostname()}


@ray.remote(num_cpus=0, max_retries=0)
def _probe(directory: str) -> str | None:
    """Create and remove a file in ``directory`` on the node this task runs on; the error as one line, or None."""
    path = Path(directory) / f"{PROBE_PREFIX}{this_node()['node_id']}-{os.getpid()}"
    try:
        path.write_text("probe\n", encoding="utf-8")
        path.unlink()
    except OSError as exc:
        return one_line(exc)
    return None


def held_cpus(timeout_s: float = RELEASE_TIMEOUT_S) -> float:
    """The CPUs of the connected Ray that are still held ``timeout_s`` after the caller's Tuner ended (0.0: every
    one came back). For a local Ray, where the study is the only job.

    Why: at the end of a PBT Tuner, Ray (2.60) sometimes keeps one CPU of a member's removed placement group for
    good — its trial actor's worker was still starting when Tune removed the group, and the raylet never frees
    that lease (measured: 2 runs in 4 of a 2-slot study, the CPU still held 30 s later). Every later trial's
    placement group then waits for a CPU that never comes back, and the next Tuner runs one trial at a time."""
    deadline = time.monotonic() + timeout_s
    while True:
        held = ray.cluster_resources().get("CPU", 0.0) - ray.available_resources().get("CPU", 0.0)
        if held <= 0.0 or time.monotonic() >= deadline:
            return max(0.0, held)
        time.sleep(0.1)


def check_storage(study_dir: Path, what: str) -> None:
    """Refuse (:class:`InputError` starting with ``what``) a study directory that an alive node of the connected
    cluster cannot write. The directory (and any missing parent) exists only while the probes run."""
    created = _make_dirs(study_dir, what)
    try:
        nodes = [node for node in ray.nodes() if node["Alive"]]
        probes = [
            _probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)).remote(
                str(study_dir)
            )
            for node in nodes
        ]
        deadline = time.monotonic() + PROBE_TIMEOUT_S
        for node, probe in zip(nodes, probes):
            try:
                error = ray.get(probe, timeout=max(0.0, deadline - time.monotonic()))
            except GetTimeoutError:
                error = f"no answer within {PROBE_TIMEOUT_S:.0f} s"
            except RayError as exc:
                error = one_line(exc)
            if error is not None:
                raise InputError(
                    f"{what}: node {node['NodeID']} ({node['NodeManagerHostname']}) cannot write {study_dir} "
                    f"({error}); on a cluster of several nodes the storage must be a path every node sees"
                )
    finally:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)


def _make_dirs(directory: Path, what: str) -> Path | None:
    """Make ``directory`` and its missing parents; return the topmost one made (None: it existed)."""
    missing = [p for p in (directory, *directory.parents) if not p.exists()]
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if missing and missing[-1].exists():
            shutil.rmtree(missing[-1], ignore_errors=True)
        raise InputError(f"{what}: cannot create {directory} ({one_line(exc)})") from None
    return missing[-1] if missing else None
