"""What the deterministic search costs: the same small study run by this checkout (Optuna asked in batches, told in
slot order, early stopping decided against earlier batches) and by the project at BEFORE, the last commit with
the asynchronous search (Ray's ASHA and a ConcurrencyLimiter over Optuna: whichever trial ends first frees its
slot at once).

The study: one controller arm whose search draws a same-loss or a lookahead objective (a lookahead trial with
``lookahead_every: 1`` costs about 3x a same-loss one, so a batch that waits for its slowest trial shows its
price), 8 search trials of 6 epochs with early stopping at epochs 2 and 4 (halving), 2 at a time, then the pick
on one seed. Both versions run it from a fresh study directory on a local Ray, one after the other, each from the
command line (``diffctl study run``). Prints each version's wall time, its search trial-epochs (early stopping
decides differently, so the compute differs too) and the ratios: wall time, and wall time per trial-epoch.

    python -m benchmarks.search_sync [--before b476561] [--budget 8]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "b476561"  # the last commit with Ray's asynchronous ASHA and ConcurrencyLimiter


def bench_spec(budget: int) -> dict:
    """A spec both versions accept (no key the earlier one lacks)."""
    return {
        "name": "sync",
        "epochs": 6,
        "base": {"seed": 0, "eval": {"prior_samples": 5000, "triplets": 5000, "full_every": 2}},
        "objectives": [{"metric": "triplet_r_A", "mode": "max"}],
        "constraints": ["val_exact_match_A >= 0.5"],
        "selection": {"metric": "triplet_r_A", "mode": "max"},
        "sampler_seed": 0,
        "max_concurrent": 2,
        "cpus_per_trial": 1,
        "asha": {"grace_period": 2, "reduction_factor": 2},
        "confirm": {"top_k": 1, "seeds": [1001], "distill": []},
        "arms": {"controller": {
            "budget": budget,
            "config": {"arm": {"kind": "controller", "regularizer": "anchor", "lookahead_every": 1}},
            "space": {
                "arm.objective": {"type": "categorical", "choices": ["same_loss", "lookahead"]},
                "arm.controller_lr": {"type": "float", "low": 1.0e-4, "high": 1.0e-2, "log": True},
                "optim.lr": {"type": "float", "low": 1.0e-3, "high": 3.0e-3, "log": True},
            },
        }},
    }


def run_study(sources: Path, spec: Path, storage: Path) -> tuple[float, int]:
    """Run the study with the project at ``sources``; its wall time and its search trial-epochs."""
    env = dict(os.environ, PYTHONPATH=str(sources))
    env.pop("RAY_ADDRESS", None)
    command = [sys.executable, "-c", "import sys; from diffctl.cli import main; sys.exit(main())",
               "study", "run", str(spec), "--storage", str(storage)]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=sources, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"study at {sources} exited {done.returncode}:\n{done.stderr[-2000:]}")
    epochs = sum(json.loads(p.read_text())["epochs_done"] for p in (storage / "sync" / "search").glob("*/*/trial.json"))
    return wall, epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default=BEFORE, help="the commit with the asynchronous search")
    parser.add_argument("--budget", type=int, default=8, help="search trials")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sync-bench-"))
    before = work / "before"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(before), args.before],
                   check=True, capture_output=True)
    try:
        spec = work / "sync.yaml"
        spec.write_text(yaml.safe_dump(bench_spec(args.budget), sort_keys=False), encoding="utf-8")
        sync_wall, sync_epochs = run_study(ROOT, spec, work / "sync")
        async_wall, async_epochs = run_study(before, spec, work / "async")
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)], check=False,
                       capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    print(f"batched, deterministic search (this checkout): {sync_wall:6.1f} s, {sync_epochs} search trial-epochs")
    print(f"asynchronous search ({args.before}):            {async_wall:6.1f} s, {async_epochs} search trial-epochs")
    print(f"wall time ratio, batched / asynchronous: {sync_wall / async_wall:.2f}x; per search trial-epoch: "
          f"{(sync_wall / sync_epochs) / (async_wall / async_epochs):.2f}x")


if __name__ == "__main__":
    main()
