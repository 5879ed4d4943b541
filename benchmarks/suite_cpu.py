"""Where a command's CPU time goes, process by process: the test suite by default (``make test``'s pytest).

Every process that exits while the command runs is recorded by the kernel's process accounting (``acct(2)``, the
records ``lastcomm`` and ``sa`` read), even one that lived a few milliseconds or was killed. A sampler reads
``/proc`` every 0.1 s: the command line and first parent of every new process, so that a process is named by what
it runs (a ``diffctl`` subcommand, a Ray trial worker, one of Ray's own services, a pytest-xdist worker) and stays
in the command's tree after its parent is killed, and each live process's CPU time. A process's CPU time is the
larger of its accounting record and its last sample: the record's tick-sampled times fall short on busy cores (a
process that spun 1.02 s of CPU was recorded as 0.64-0.80 s beside two CPU-bound processes on 2 cores), the
sample misses at most the last 0.1 s. Prints, per kind: processes, CPU-s, share and CPU-s per process; then the
total, the wall time, how busy the cores were, and the machine's own busy CPU time over the same span (every
process, the command's or not) as a check. Accounting is system-wide and needs root; only the command's
descendants are counted.

    python -m benchmarks.suite_cpu [-- COMMAND ...]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import re
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

DEFAULT = [sys.executable, "-m", "pytest", "-q", "-n", "2", "-p", "no:cacheprovider"]
AHZ = 100  # the unit of acct_v3's times (linux/acct.h)
RECORD = struct.Struct("<BBHIIIIIIf8H16s")  # struct acct_v3, 64 bytes
NESTED = "DIFFCTL_SUITE_CPU"  # set in the measured command's environment: accounting is in use (it is global)
XDIST_WORKER = "exec(eval(sys.stdin.readline()))"  # how pytest-xdist (execnet) starts a worker
INTERPRETER = re.compile(r"(^|/)python[\d.]*$")
TICK = os.sysconf("SC_CLK_TCK")  # the unit of /proc's times
SAME_START_S = 2.0  # a record's start has whole seconds, /proc's boot time too


@dataclass
class Process:
    """One process (a pid is reused: pids wrap at /proc/sys/kernel/pid_max, 32,768 here, within one suite run, so a
    process is its pid and its start). ``cmdline`` is empty when the sampler never saw it."""

    pid: int
    ppid: int
    start_s: float  # since the epoch
    cpu_s: float
    cmdline: str = ""


def _comp_t(value: int) -> int:
    """A comp_t (13-bit mantissa, 3-bit base-8 exponent) as an integer."""
    return (value & 0x1FFF) << (3 * (value >> 13))


def read_records(path: Path) -> list[Process]:
    data = path.read_bytes()
    records = []
    for offset in range(0, len(data) - RECORD.size + 1, RECORD.size):
        _flag, version, _tty, _code, _uid, _gid, pid, ppid, btime, _etime, utime, stime, *_rest = \
            RECORD.unpack_from(data, offset)
        if version & 0x7F != 3:
            raise ValueError(f"{path}: acct record version {version}, expected 3")
        records.append(Process(pid, ppid, float(btime), (_comp_t(utime) + _comp_t(stime)) / AHZ))
    return records


class Accounting:
    """Process accounting into a file while the block runs (turned off on the way out, whatever happens)."""

    def __init__(self, path: Path):
        self.path = path
        self._libc = ctypes.CDLL(None, use_errno=True)

    def __enter__(self) -> Accounting:
        if os.environ.get(NESTED):
            raise PermissionError(f"process accounting is in use by the suite_cpu that runs this one ({NESTED} set)")
        self.path.write_bytes(b"")
        if self._libc.acct(str(self.path).encode()) != 0:
            errno = ctypes.get_errno()
            raise PermissionError(f"process accounting (acct(2)) refused: {os.strerror(errno)}; it needs root")
        return self

    def __exit__(self, *exc) -> None:
        self._libc.acct(None)


class Sampler(threading.Thread):
    """Every process that appears (polling /proc), by (pid, start): its command line, first-seen parent (before
    any reparenting), start and CPU time so far."""

    def __init__(self, every_s: float = 0.1):
        super().__init__(daemon=True)
        self.every_s, self._done = every_s, threading.Event()
        self.procs: dict[tuple[int, int], Process] = {}
        self._boot_s = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                            if line.startswith("btime "))

    def run(self) -> None:
        while not self._done.is_set():
            self.sample()
            self._done.wait(self.every_s)

    def sample(self) -> None:
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                fields = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()
                key = (int(name), int(fields[19]))  # starttime, in ticks since boot
                if key not in self.procs:
                    cmdline = Path(f"/proc/{name}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                    if not cmdline:
                        continue  # a kernel thread, or a process already exiting
                    self.procs[key] = Process(key[0], int(fields[1]), self._boot_s + key[1] / TICK, 0.0,
                                              cmdline.strip())
            except (OSError, ValueError, IndexError):
                continue
            self.procs[key].cpu_s = (int(fields[11]) + int(fields[12])) / TICK  # utime + stime

    def stop(self) -> None:
        self._done.set()
        self.join()
        self.sample()


def busy_cpu_s() -> float:
    """The machine's busy CPU time so far (user, nice, system, irq, softirq), from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    return sum(int(fields[i]) for i in (0, 1, 2, 5, 6)) / TICK


def kind_of(cmdline: str) -> str:
    """What a process runs, by its program (the script an interpreter runs, else the executable)."""
    if XDIST_WORKER in cmdline:
        return "pytest-xdist worker"
    words = cmdline.split()
    program = next((w for w in words[:4] if not w.startswith("-") and not INTERPRETER.search(w)), "")
    if program.endswith("/default_worker.py"):
        return "Ray worker (trial actors)"
    if "/ray/" in program or program.endswith("/bin/ray"):  # raylet, gcs_server, dashboard, agents, monitors, ray start
        return "Ray services"
    if program == "diffctl" or program.endswith("/diffctl"):
        rest = words[words.index(program) + 1:]
        return "diffctl " + " ".join(rest[:2] if rest[:1] == ["study"] else rest[:1])
    return "other"


def merged(records: list[Process], sampled: list[Process]) -> list[Process]:
    """Every process once: a record joins the sample of the same pid started within
    :data:`SAME_START_S` of it, taking the larger CPU time; a record alone is a process the sampler missed (it lived
    < 0.1 s); a sample alone, one still running when accounting stopped."""
    by_pid: dict[int, list[Process]] = defaultdict(list)
    for proc in sampled:
        by_pid[proc.pid].append(proc)
    processes = list(sampled)
    for record in records:
        match = next((p for p in by_pid[record.pid] if abs(p.start_s - record.start_s) <= SAME_START_S), None)
        if match is None:
            processes.append(record)
        else:
            match.cpu_s = max(match.cpu_s, record.cpu_s)
    return processes


def attribute(processes: list[Process], root: Process) -> dict[str, list[float]]:
    """Kind -> CPU-s of each of ``root``'s descendants (and ``root``). A process whose command line the sampler
    missed takes its nearest named ancestor's kind, marked "(child)". A parent is the latest process of that pid
    started before its child."""
    by_pid: dict[int, list[Process]] = defaultdict(list)
    for proc in sorted(processes, key=lambda p: p.start_s):
        by_pid[proc.pid].append(proc)

    def parent(proc: Process) -> Process | None:
        earlier = [p for p in by_pid.get(proc.ppid, []) if p.start_s <= proc.start_s + 1.0]
        return earlier[-1] if earlier else None

    kinds: dict[str, list[float]] = defaultdict(list)
    for proc in processes:
        chain = [proc]
        while chain[-1] is not root and len(chain) < 64 and (up := parent(chain[-1])) is not None:
            chain.append(up)
        if chain[-1] is not root:
            continue
        named = next((p for p in chain if p.cmdline), None)
        kind = "unnamed" if named is None else kind_of(named.cmdline)
        kinds[kind if named is proc else f"{kind} (child)"].append(proc.cpu_s)
    return kinds


def report(kinds: dict[str, list[float]], wall_s: float, cores: int, machine_s: float | None = None) -> str:
    total = sum(sum(v) for v in kinds.values())
    lines = [f"{'kind':<34} {'procs':>6} {'CPU-s':>8} {'share':>6} {'CPU-s/proc':>10}"]
    for kind, cpus in sorted(kinds.items(), key=lambda kv: -sum(kv[1])):
        lines.append(f"{kind:<34} {len(cpus):>6} {sum(cpus):>8.1f} {sum(cpus) / total:>6.1%} "
                     f"{sum(cpus) / len(cpus):>10.2f}")
    lines.append(f"total {total:.1f} CPU-s in {wall_s:.1f} s on {cores} cores: "
                 f"{total / (wall_s * cores):.0%} of them busy")
    if machine_s is not None:
        lines.append(f"the machine was busy {machine_s:.1f} CPU-s over the same span (every process)")
    return "\n".join(lines)


def measure(command: list[str], cwd: Path | None = None) -> tuple[dict[str, list[float]], float, float, int]:
    """Run ``command`` under process accounting: (kind -> CPU-s per process, wall s, the machine's busy CPU-s
    over the same span, exit code)."""
    with tempfile.TemporaryDirectory(prefix="suite-cpu-") as scratch:
        path = Path(scratch) / "acct"
        sampler = Sampler()
        with Accounting(path):
            sampler.start()
            start, busy, started_s = time.perf_counter(), busy_cpu_s(), time.time()
            try:
                process = subprocess.Popen(command, cwd=cwd, env={**os.environ, NESTED: "1"})
                code = process.wait()
            finally:
                wall, busy = time.perf_counter() - start, busy_cpu_s() - busy
                sampler.stop()
            time.sleep(0.2)  # the last records of the command's tree
        processes = merged(read_records(path), list(sampler.procs.values()))
        root = next(p for p in processes if p.pid == process.pid and p.start_s >= started_s - SAME_START_S)
        return attribute(processes, root), wall, busy, code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.suite_cpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="*", help="the command to measure (after --; default: the suite)")
    args = parser.parse_args(argv)
    try:
        kinds, wall, busy, code = measure(args.command or DEFAULT)
    except (PermissionError, FileNotFoundError) as exc:
        print(f"suite_cpu: {exc}", file=sys.stderr)
        return 2
    print(report(kinds, wall, os.cpu_count() or 1, busy))
    return code


if __name__ == "__main__":
    sys.exit(main())
