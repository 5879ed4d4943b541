"""Benchmark of the study layer: a study of 8 trials that all train 12 epochs (quick.yaml's length and evaluation;
2 arms x 2 search trials, then each arm's best on 2 seeds) on a local Ray with 2 concurrent trials, against the
same trials run one after another in one process without Ray.

Prints, from one run, the measured figures side by side: Ray's start, the study's wall time, the serial time,
the speed-up (goal >= 1.7x on 2 cores) and Ray's overhead per trial, (study wall x concurrency - serial
compute) / trials (goal <= 1 s). The study runs in one Tuner, whose start (new trial actors importing torch)
is paid once, shown as the wait before the first trial. ``--warm`` adds a second Ray run that starts the Tuner
only WARM_S seconds after Ray, when its idle workers have imported torch and the project, as on a Ray that has
been up a while: the difference between the two runs is the workers' start. (A probe task would not do: an
idle worker that has run a task is not given to a trial actor, which then starts a worker of its own.)

    python -m benchmarks.study_bench [--epochs 12] [--warm]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import ray
import yaml

from diffctl.config import load_config
from diffctl.train import train
from study.runner import connect, create_study_dir, run_phases
from study.protocol import load_spec

CONCURRENT = 2
WARM_S = 10.0  # seconds for Ray's idle workers to import torch and the project (~3.3 s each here)
QUICK_SPEC = Path(__file__).resolve().parents[1] / "study" / "specs" / "quick.yaml"
EPOCHS = 12  # quick.yaml's


def bench_spec(epochs: int) -> dict:
    """8 trials of ``epochs`` epochs with quick.yaml's base (its evaluation): two fixed-weight arms of 2 search
    trials each over ranges that all train, then each arm's best on 2 seeds; 2 at a time (an even number of
    equal trials fills both slots in every round)."""
    quick = yaml.safe_load(QUICK_SPEC.read_text(encoding="utf-8"))
    arm = {"budget": 2, "config": {"arm": {"kind": "fixed"}}}
    return {
        "name": "bench",
        "epochs": epochs,
        "base": quick["base"],
        "objectives": [{"metric": "val_loss_unweighted", "mode": "min"}],
        "max_concurrent": CONCURRENT,
        "cpus_per_trial": 1,
        "confirm": {"top_k": 1, "seeds": [1001, 1002]},
        "arms": {
            "kl": dict(arm, space={"arm.w_kl": {"type": "float", "low": 0.05, "high": 0.5, "log": True}}),
            "rank": dict(arm, space={"arm.w_rank": {"type": "float", "low": 0.1, "high": 1.0}}),
        },
    }


def run_on_ray(root: Path, epochs: int, warm: bool = False) -> tuple[Path, float, float, float]:
    """Run the bench study; returns its directory, Ray's start time, the study's wall time and the wait before its
    first trial. ``warm``: start the study WARM_S seconds after Ray, once its idle workers are ready."""
    spec_path = root / "bench.yaml"
    spec_path.write_text(yaml.safe_dump(bench_spec(epochs), sort_keys=False), encoding="utf-8")
    spec = load_spec(spec_path)
    assert spec.max_concurrent == CONCURRENT
    study_dir = root / ("warm" if warm else "cold") / "bench"
    start = time.perf_counter()
    connect(spec, None)
    ray_start = time.perf_counter() - start
    try:
        if warm:
            time.sleep(WARM_S)
        create_study_dir(study_dir, spec, None)
        start, started = time.perf_counter(), time.time()
        run_phases(study_dir, spec)
        phases = time.perf_counter() - start
    finally:
        ray.shutdown()
    return study_dir, ray_start, phases, first_trial_start(study_dir) - started


def trial_time_in_ray(study_dir: Path) -> float:
    """The trials' own wall time under Ray (trial.json), summed."""
    return sum(json.loads(p.read_text())["wall_time_s"] for p in study_dir.glob("*/*/*/trial.json"))


def first_trial_start(study_dir: Path) -> float:
    """When the first trial began (its lock file is the first thing a trial creates), as a Unix time."""
    return min(p.stat().st_mtime for p in study_dir.glob("*/*/*/.lock"))


def run_serially(study_dir: Path) -> tuple[int, float]:
    """Train every trial config of the study one after another in this process; returns (trials, seconds)."""
    configs = sorted(study_dir.glob("*/*/*/config.yaml"))
    start = time.perf_counter()
    for path in configs:
        for _ in train(load_config(path)):
            pass
    return len(configs), time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=EPOCHS, help=f"epochs per trial (default {EPOCHS})")
    parser.add_argument("--warm", action="store_true", help="also run the study on a Ray up for WARM_S seconds")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="study_bench_"))
    try:
        study_dir, ray_start, phases, first = run_on_ray(root, args.epochs)
        in_ray = trial_time_in_ray(study_dir)
        warm = run_on_ray(root, args.epochs, warm=True) if args.warm else None
        trials, serial = run_serially(study_dir)
        statuses = sorted({json.loads(p.read_text())["status"] for p in study_dir.glob("*/*/*/trial.json")})
    finally:
        shutil.rmtree(root, ignore_errors=True)
    overhead = (phases * CONCURRENT - serial) / trials
    print(f"study bench: {trials} trials of {args.epochs} epochs (status {', '.join(statuses)}), {CONCURRENT} "
          f"concurrent, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} after the run")
    print(f"  ray start             {ray_start:7.1f} s")
    print(f"  study on Ray (wall)   {phases:7.1f} s   (one Tuner; first trial after {first:.1f} s: actors, imports)")
    print(f"  serial, no Ray        {serial:7.1f} s   ({serial / trials:.2f} s per trial)")
    print(f"  trial time under Ray  {in_ray:7.1f} s   (summed over trials, {CONCURRENT} at a time;"
          f" {in_ray / serial - 1:+.1%} against serial)")
    print(f"  speed-up {serial / phases:.2f} x (goal >= 1.7 x; with Ray's start {serial / (phases + ray_start):.2f} x)"
          f"   |   Ray overhead {overhead:.2f} s per trial (goal <= 1 s)")
    if warm is not None:
        _, _, warm_phases, warm_first = warm
        warm_overhead = (warm_phases * CONCURRENT - serial) / trials
        print(f"  with warm workers     {warm_phases:7.1f} s   (first trial after {warm_first:.1f} s): speed-up "
              f"{serial / warm_phases:.2f} x, overhead {warm_overhead:.2f} s per trial")


if __name__ == "__main__":
    main()
