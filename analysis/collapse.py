"""Whether a controller learned or collapsed: per controller trial, the final epoch's ``*_at_floor``
fractions, weights, rho and controller parameter drift, and a ``collapsed`` label.

The rule: a weight sits at its floor when its ``<weight>_at_floor`` fraction (share of the epoch's steps
within 1% of the lower bound) is at least ``AT_FLOOR`` in the trial's last finished epoch. A trial's
``collapse`` is ``weights`` when at least ``COLLAPSED_WEIGHTS`` of the four weights sit at their floors (the
seed's literal controller pins all four within a few epochs); ``reconstruction`` when w_recon sits at its floor
and a VAE reconstructs (almost) nothing, val exact match below ``RECON_COLLAPSED`` (a log-barrier controller
keeps w_rank and w_ent off their floors, but w_recon pinned there can leave reconstruction unlearnt); else
``none``. ``collapsed`` is true for either kind.
"""

from __future__ import annotations

import pandas as pd

from diffctl.arms import WEIGHT_NAMES

from .load import StudyTables

AT_FLOOR = 0.9
COLLAPSED_WEIGHTS = 3
RECON_COLLAPSED = 0.05  # val exact match below which a VAE is said to reconstruct nothing
WEIGHTS, RECONSTRUCTION, NONE = "weights", "reconstruction", "none"
SIGNALS = ("rho_mean", *(f"{w}_mean" for w in WEIGHT_NAMES), "controller_param_drift", "controller_grad_norm")


def controller_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """The trials whose records carry floor fractions (the arms with a learned controller)."""
    columns = [c for c in trials.columns if c.startswith("final_") and c.endswith("_at_floor")]
    if not columns:
        return trials.iloc[0:0]
    return trials[trials[columns].notna().any(axis=1)]


def collapse_table(tables: StudyTables) -> pd.DataFrame:
    """One row per controller trial (search and confirmation) with its floor fractions and the label."""
    trials = controller_trials(tables.trials)
    floor_columns = [c for c in trials.columns if c.startswith("final_") and c.endswith("_at_floor")]
    signal_columns = [f"final_{s}" for s in SIGNALS if f"final_{s}" in trials.columns]
    match_columns = [c for c in ("final_val_exact_match_A", "final_val_exact_match_B") if c in trials.columns]
    table = trials[["arm", "phase", "trial_id", "seed", "status", *floor_columns, *signal_columns,
                    *match_columns]].copy()
    table.columns = [c.removeprefix("final_") for c in table.columns]
    weight_floors = [f"{w}_at_floor" for w in WEIGHT_NAMES if f"{w}_at_floor" in table.columns]
    table["weights_at_floor"] = (table[weight_floors].astype(float) >= AT_FLOOR).sum(axis=1).astype(int)
    matches = [c.removeprefix("final_") for c in match_columns]
    lowest = table[matches].astype(float).min(axis=1) if matches else pd.Series(float("nan"), index=table.index)
    recon_pinned = table.get("w_recon_at_floor", pd.Series(0.0, index=table.index)).astype(float) >= AT_FLOOR
    table["collapse"] = NONE
    table.loc[recon_pinned & (lowest < RECON_COLLAPSED), "collapse"] = RECONSTRUCTION
    table.loc[table["weights_at_floor"] >= COLLAPSED_WEIGHTS, "collapse"] = WEIGHTS
    table["collapsed"] = table["collapse"] != NONE
    return table.reset_index(drop=True)


def collapse_by_arm(table: pd.DataFrame) -> pd.DataFrame:
    """Per arm and phase: controller trials, how many collapsed, and the mean final floor fractions."""
    if table.empty:
        return pd.DataFrame(columns=["arm", "phase", "trials", "collapsed"])
    floors = [c for c in table.columns if c.endswith("_at_floor")]
    grouped = table.groupby(["arm", "phase"], sort=False)
    summary = grouped.agg(trials=("trial_id", "size"), collapsed=("collapsed", "sum"),
                          weights=("collapse", lambda c: int((c == WEIGHTS).sum())),
                          reconstruction=("collapse", lambda c: int((c == RECONSTRUCTION).sum())))
    return summary.join(grouped[floors].mean()).reset_index()


def collapse_sentence(table: pd.DataFrame) -> str:
    """Per arm, over its search and confirmation trials: how many collapsed, and of which kind."""
    parts = []
    for arm, group in table.groupby("arm", sort=False):
        kinds = [f"{int((group['collapse'] == kind).sum())} {kind}" for kind in (WEIGHTS, RECONSTRUCTION)
                 if (group["collapse"] == kind).any()]
        parts.append(f"`{arm}` {int(group['collapsed'].sum())}/{len(group)}" + (f" ({', '.join(kinds)})" if kinds else ""))
    return "; ".join(parts)
