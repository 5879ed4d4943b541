"""``diffctl export STUDY_DIR [--arm A] --out best.yaml``: the confirmation-phase winner of an arm as a diffctl
config with its provenance, so that ``diffctl train --config best.yaml`` and ``diffctl reproduce best.yaml`` run it.

Which arm: without ``--arm``, the arm the analysis names the winner (``analysis.compare.winner``: better than
the reference arm and feasible on every confirmation seed); when there is none, the reference arm (the spec's
``reference``, else the fixed-lambda arm), and the command says so. ``--arm`` is honoured, with a warning when that
arm missed the constraints on some seed.
Which run: the arm's confirmed configuration (``analysis.runs.confirmation_winner`` over every search replicate:
most feasible seeds first); of its finished runs, the one with the earliest spec confirmation seed (a fixed rule,
not the luckiest seed). The provenance states the configuration's mean over its confirmation runs first, then
that run's value, the code that trained it (warning when no commit holds it) and the code that exported it. The
config and the record come from the study's tables, so a published study (its Parquet tables only) exports too.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from diffctl.config import config_from_dict, dump_config, load_config
from diffctl.errors import InputError
from diffctl.files import atomic_write_text
from diffctl.provenance import code_version

from .compare import paired_vs_fixed, winner
from .runs import confirmation_winner, feasible_share, winner_runs
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


def best_arm(tables: StudyTables) -> tuple[str, str]:
    """(arm, why): the analysis's winner, else the reference arm (the fixed-lambda arm unless the spec names
    another)."""
    name, sentence = winner(tables, paired_vs_fixed(tables))
    if name is not None:
        return name, "the winner of the analysis"
    reference = tables.reference_arm()
    if reference is None:
        raise InputError(f"{tables.study_dir}: no winner and no reference arm; choose one with --arm")
    return reference, f"the {tables.reference_text()} ({sentence.split(':', 1)[0]})"


def configuration_runs(tables: StudyTables, arm: str) -> pd.DataFrame:
    """The runs of the arm's confirmed configuration (over every replicate; a derived arm: its representing runs)."""
    runs = winner_runs(tables, arm)
    source = confirmation_winner(tables, arm) if arm in tables.spec.arms else None
    return runs[runs["source_trial"] == source] if source is not None else runs


def _exported_run(tables: StudyTables, arm: str) -> pd.Series:
    runs = configuration_runs(tables, arm)
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
    runs = configuration_runs(tables, arm)
    confirm = t_interval(runs.loc[runs["usable"], f"final_{selection.metric}"].astype(float))
    feasible, seeds = feasible_share(tables, arm)
    return {
        "study": tables.spec.name,
        "study_dir": tables.shown_dir(),
        "arm": arm,
        "phase": str(run["phase"]),
        "trial_id": str(run["trial_id"]),
        "source_trial": None if pd.isna(run["source_trial"]) else str(run["source_trial"]),
        "selection_rule": {
            "metric": selection.metric,
            "mode": selection.mode,
            "constraints": list(tables.spec.constraints),
            "rule": "the analysis's winner (better than the reference arm, feasible on every confirmation seed), "
            "else the reference arm, or the arm named with --arm; its confirmed configuration (most "
            "feasible confirmation seeds, then fewest failed, then best mean); its finished run with the earliest "
            "confirmation seed",
            "chosen": why,
        },
        "feasible_seeds": f"{feasible}/{seeds}",
        # What the configuration gives: its mean over every confirmation run first; then the one run exported.
        "confirmation": {"metric": selection.metric, **{k: (None if v != v else v) for k, v in confirm.items()}},
        "objective": {"metric": selection.metric, "mode": selection.mode, "value": record[selection.metric],
                      "epoch": int(record["epoch"])},
        "objectives": {o.metric: record.get(o.metric) for o in tables.spec.objectives},
        "seed": int(run["seed"]),
        "threads": threads,
        "versions": package_versions(),
        "code": {"trials": None if pd.isna(run.get("code_commit")) else
                 {"commit": str(run["code_commit"]), "dirty": bool(run["code_dirty"]),
                  "diff_sha256": None if pd.isna(run.get("code_diff_sha256")) else str(run["code_diff_sha256"])},
                 "export": code_version()},
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
    if run.get("code_dirty") is True or run.get("code_dirty") == 1:
        print(f"warning: trial {run['trial_id']} ran from a dirty tree (no commit holds its code: "
              f"{run['code_commit']} with local changes)", file=sys.stderr)
    config = config_from_dict(json.loads(run["config_json"]))
    epochs = tables.epochs
    at = epochs[(epochs["arm"] == arm) & (epochs["phase"] == run["phase"]) & (epochs["trial_id"] == run["trial_id"])
                & (epochs["epoch"] == run["final_epoch"])]
    record = {k: v.item() if hasattr(v, "item") else v for k, v in at.iloc[0].items()} if len(at) else {}
    record = {k: v for k, v in record.items() if not (isinstance(v, float) and v != v)}
    if record.get(tables.spec.selection.metric) is None:
        raise InputError(f"{tables.study_dir / run['trial_dir']}: no {tables.spec.selection.metric} at epoch "
                         f"{run['final_epoch']}")
    record["epoch"] = int(record["epoch"])
    exported = config_from_dict(
        {**config.to_dict(), "provenance": provenance(tables, arm, why, run, record, config.optim.threads)}
    )
    atomic_write_text(out_path, dump_config(exported))
    return out_path


def export_command(study_dir: str, arm: str | None, out: str) -> int:
    """CLI entry: export and print what was written."""
    path = export_best(study_dir, arm, out)
    chosen = load_config(path).provenance
    objective, confirmation = chosen["objective"], chosen["confirmation"]
    print(f"wrote {path}: arm `{chosen['arm']}`, {chosen['selection_rule']['chosen']}; feasible on "
          f"{chosen['feasible_seeds']} confirmation runs; {objective['metric']} mean {confirmation['mean']:.4g} over "
          f"{confirmation['n']} runs; exported with seed {chosen['seed']}: {objective['value']} at epoch "
          f"{objective['epoch']}")
    return 0
