"""Study tables written by hand (no study run): each arm's confirmation runs as a replicates x seeds table of the
selection metric and a feasibility table, for the tests of the verdicts' statistics (tests/test_pipeline_stats.py).

A run's records are two epochs with the same values; ``val_exact_match_A``/``_B`` are 1 for a feasible run and 0
for one that misses the constraint (``val_exact_match_A >= 0.9``), so that ``feasible`` is what the constraint
says. An ablation option's runs are made from the centre's run on the same seed, as the study makes them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis.load import StudyTables
from study.phases.ablate import RUNS, AblationPlan, CentreRun, PlannedOption
from study.protocol import spec_from_dict
from study.protocol.plan import ablate_label
from tiny_specs import spec_variant

EPOCHS = 2
ARMS = {
    "fixed": {"budget": 2, "config": {"arm": {"kind": "fixed"}},
              "space": {"arm.w_rank": {"type": "float", "low": 0.05, "high": 20.0, "log": True}}},
    "controller": {"budget": 2, "config": {"arm": {"kind": "controller"}},
                   "space": {"arm.controller_lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}}},
}


def hand_spec(seeds: list[int], replicates: int, margin: float = 0.01, ablate: dict | None = None):
    """A two-arm spec (``fixed``, ``controller``) on the given seeds, selection metric triplet_r_A (max)."""
    return spec_from_dict(spec_variant(
        name="hand", epochs=EPOCHS, search_replicates=replicates, constraints=["val_exact_match_A >= 0.9"],
        confirm={"top_k": 1, "seeds": seeds, "budgets": [1.0], "distill": []},
        equivalence={"triplet_r_A": margin}, arms=ARMS, **({"ablate": ablate} if ablate else {})))


def _run(phase: str, arm: str, kind: str, trial_id: str, replicate: int, seed: int, value: float, feasible: bool,
         **extra) -> tuple[dict, list[dict]]:
    fields = {"triplet_r_A": float(value), "val_loss_unweighted": 1.0 - float(value),
              "val_exact_match_A": 1.0 if feasible else 0.0, "val_exact_match_B": 1.0 if feasible else 0.0}
    trial = {"phase": phase, "arm": arm, "arm.kind": kind, "trial_id": trial_id, "replicate": replicate,
             "seed": seed, "status": "ok", "reason": None, "usable": True, "feasible": bool(feasible),
             "feasible_val": bool(feasible), "final_epoch": EPOCHS, **{f"final_{k}": v for k, v in fields.items()},
             **extra}
    records = [{"phase": phase, "arm": arm, "trial_id": trial_id, "seed": seed, "epoch": e, "status": "ok", **fields}
               for e in range(1, EPOCHS + 1)]
    return trial, records


def confirm_rows(arm: str, values, feasible) -> tuple[list[dict], list[dict]]:
    """One arm's confirmation runs: ``values`` and ``feasible`` are replicates x seeds (``SEEDS`` order)."""
    values = np.atleast_2d(values)
    feasible = np.broadcast_to(np.asarray(feasible, dtype=bool), values.shape)
    trials, records = [], []
    for i, row in enumerate(values):
        for k, value in enumerate(row):
            seed = SEEDS[k]
            trial, recs = _run("confirm", arm, ARMS[arm]["config"]["arm"]["kind"], f"r{i}-0000-{seed}", i, seed,
                               value, feasible[i, k], source_trial=f"r{i}-0000")
            trials.append(trial)
            records += recs
    return trials, records


SEEDS = [1001, 1002, 1003, 1004, 1005]


def hand_tables(spec, runs: dict[str, tuple]) -> StudyTables:
    """StudyTables of the arms' confirmation runs (arm -> (values, feasible)), seeds ``SEEDS[:n]``."""
    trials, records = [], []
    for arm, (values, feasible) in runs.items():
        t, r = confirm_rows(arm, values, feasible)
        trials += t
        records += r
    return StudyTables(Path("/nonexistent/hand"), spec, pd.DataFrame(trials), pd.DataFrame(records))


def add_ablation(tables: StudyTables, options: dict[tuple[str, str], tuple]) -> AblationPlan:
    """Ablation options around the controller's replicate 0 (``(axis, option) -> (values, feasible)`` per seed),
    each run made from the centre's run on its seed; the plan that names them."""
    seeds = list(tables.spec.confirm.seeds)
    trials, records, planned = [], [], []
    for (axis, option), (values, feasible) in options.items():
        label = ablate_label("controller", axis, option)
        planned.append(PlannedOption(axis=axis, option=option, label=label, overrides={}, status=RUNS))
        for k, seed in enumerate(seeds):
            ok = feasible if np.isscalar(feasible) else feasible[k]
            t, r = _run("ablate", label, "controller", f"r0-0000-{seed}", 0, seed, values[k], ok,
                        source_arm="controller", source_trial=f"r0-0000-{seed}", source_feasible=True)
            trials.append(t)
            records += r
    tables.trials = pd.concat([tables.trials, pd.DataFrame(trials)], ignore_index=True)
    tables.epochs = pd.concat([tables.epochs, pd.DataFrame(records)], ignore_index=True)
    return AblationPlan(arm="controller", centre="r0-0000", params={}, seeds=seeds,
                        runs=[CentreRun(seed=s, trial_id=f"r0-0000-{s}") for s in seeds], options=planned)
