"""``diffctl export STUDY_DIR [--arm A] --out best.yaml``: the confirmation-phase winner of an arm as a diffctl
config with its provenance, so that ``diffctl train --config best.yaml`` and ``diffctl reproduce best.yaml`` run it.

Which arm: without ``--arm``, the arm the analysis names the winner (``analysis.compare.winner``: better than
fixed lambda and feasible on every confirmation seed); when there is none, the fixed-lambda reference arm, and
the command says so. ``--arm`` is honoured, with a warning when that arm missed the constraints on some seed.
Which run: the arm's confirmed configuration (``analysis.runs.confirmation_winner``: most feasible seeds first);
of its finished runs, the one with the earliest spec confirmation seed (a fixed rule, not the luckiest seed).
"""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

import diffctl
from diffctl.config import config_from_dict, dump_config, load_config
from diffctl.errors import InputError
from diffctl.files import atomic_write_text, read_jsonl

from .compare import paired_vs_fixed, winner
from .runs import feasible_share, winner_runs
from .load import StudyTables, build_tables
from .stats import t_interval

VERSIONED_PACKAGES = ("torch", "ray", "optuna", "numpy", "diffctl")


def package_versions() -> dict[str, str | None]:
    """Versions of python and of the packages a result depends on (None when one is not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def source_commit() -> dict[str, Any] | None:
    """The git commit of the diffctl sources and whether the checkout had local changes (None outside git)."""
    where = Path(diffctl.__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return None
    return {"commit": commit, "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def best_arm(tables: StudyTables) -> tuple[str, str]:
    """(arm, why): the analysis's winner, else the fixed-lambda reference arm."""
    name, sentence = winner(tables, paired_vs_fixed(tables))
    if name is not None:
        return name, "the winner of the analysis"
    reference = tables.fixed_arm()
    if reference is None:
        raise InputError(f"{tables.study_dir}: no winner and no fixed-λ reference arm; choose one with --arm")
    return reference, f"the fixed-λ reference arm ({sentence.split(':', 1)[0]})"


def _exported_run(tables: StudyTables, arm: str) -> pd.Series:
    runs = winner_runs(tables, arm)
    runs = runs[runs["usable"]]
    if runs.empty:
        raise InputError(f"--arm {arm}: no finished confirmation run to export")
    order = {seed: i for i, seed in enumerate(tables.spec.confirm.seeds)}
    ranked = runs.assign(order=runs["seed"].map(lambda s: order.get(s, len(order)))).sort_values(["order", "seed"])
    return ranked.iloc[0]


def provenance(
    tables: StudyTables, arm: str, why: str, run: pd.Series, record: dict, threads: int
) -> dict[str, Any]:
    """Where the exported config came from and the value ``diffctl reproduce`` must find again."""
    selection = tables.spec.selection
    runs = winner_runs(tables, arm)
    confirm = t_interval(runs.loc[runs["usable"], f"final_{selection.metric}"].astype(float))
    feasible, seeds = feasible_share(tables, arm)
    return {
        "study": tables.spec.name,
        "study_dir": str(tables.study_dir),
        "arm": arm,
        "phase": str(run["phase"]),
        "trial_id": str(run["trial_id"]),
        "source_trial": None if pd.isna(run["source_trial"]) else str(run["source_trial"]),
        "selection_rule": {
            "metric": selection.metric,
            "mode": selection.mode,
            "constraints": list(tables.spec.constraints),
            "rule": "the analysis's winner (better than fixed lambda, feasible on every confirmation seed), else "
            "the fixed-lambda reference arm, or the arm named with --arm; its confirmed configuration (most "
            "feasible confirmation seeds, then fewest failed, then best mean); its finished run with the earliest "
            "confirmation seed",
            "chosen": why,
        },
        "feasible_seeds": f"{feasible}/{seeds}",
        "objective": {"metric": selection.metric, "mode": selection.mode, "value": record[selection.metric],
                      "epoch": int(record["epoch"])},
        "objectives": {o.metric: record.get(o.metric) for o in tables.spec.objectives},
        "confirmation": {k: (None if v != v else v) for k, v in confirm.items()},
        "seed": int(run["seed"]),
        "threads": threads,
        "versions": package_versions(),
        "git": source_commit(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def export_best(study_dir: str | Path, arm: str | None, out: str | Path) -> Path:
    """Write the chosen arm's confirmation winner as a diffctl config with provenance; return the path."""
    out_path = Path(out).absolute()
    if out_path.is_dir():
        raise InputError(f"--out {out}: is a directory, not a file")
    if not out_path.parent.is_dir():
        raise InputError(f"--out {out}: parent directory {out_path.parent} does not exist")
    tables = build_tables(study_dir)
    if arm is None:
        arm, why = best_arm(tables)
    elif arm not in tables.arms():
        raise InputError(f"--arm {arm}: no such arm (arms: {', '.join(tables.arms())})")
    else:
        why = "named with --arm"
    run = _exported_run(tables, arm)  # refuses an arm without a finished confirmation run
    feasible, seeds = feasible_share(tables, arm)
    if feasible < seeds:
        print(f"warning: `{arm}` met the constraints on {feasible} of {seeds} confirmation seeds", file=sys.stderr)
    trial_dir = tables.study_dir / run["trial_dir"]
    config = load_config(trial_dir / "config.yaml")
    records = [r for r in read_jsonl(trial_dir / "metrics.jsonl") if r.get("epoch") == run["final_epoch"]]
    if not records or records[0].get(tables.spec.selection.metric) is None:
        raise InputError(f"{trial_dir}: no {tables.spec.selection.metric} at epoch {run['final_epoch']}")
    exported = config_from_dict(
        {**config.to_dict(), "provenance": provenance(tables, arm, why, run, records[0], config.optim.threads)}
    )
    atomic_write_text(out_path, dump_config(exported))
    return out_path


def export_command(study_dir: str, arm: str | None, out: str) -> int:
    """CLI entry: export and print what was written."""
    path = export_best(study_dir, arm, out)
    chosen = load_config(path).provenance
    objective = chosen["objective"]
    print(f"wrote {path}: arm `{chosen['arm']}`, {chosen['selection_rule']['chosen']}; feasible on "
          f"{chosen['feasible_seeds']} confirmation seeds; {objective['metric']} = {objective['value']} at epoch "
          f"{objective['epoch']}")
    return 0
