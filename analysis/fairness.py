"""Is the comparison fair? Equal compute and equal freedom, read from the spec and the tables.

**Compute.** The cost table (``analysis.report.cost_table``) gives trial-epochs and CPU-seconds per arm and phase.
A PBT arm's population trains population x epochs trial-epochs whatever happens; an Optuna arm's search with early
stopping consumes fewer than budget x epochs. :func:`compute_table` sets each arm's search trial-epochs against
the mean of the Optuna arms' and states the ratio.

**Freedom.** A key that one arm searches and another arm that has it holds constant (the learning rate, say) is a
handicap, not a comparison: :func:`freedom_table` names each, with the constant it was held at.
"""

from __future__ import annotations

import pandas as pd

from diffctl.config import config_from_dict
from study.spec import trial_config
from study.spec.plan import SEARCH

from .load import StudyTables, flatten


def searched_keys(tables: StudyTables, arm: str) -> set[str]:
    """The flat keys an arm's search moves: its space, or a PBT arm's mutations."""
    arm_spec = tables.spec.arms[arm]
    return set(arm_spec.pbt.mutations) if arm_spec.is_pbt else set(arm_spec.space)


def compute_table(tables: StudyTables) -> pd.DataFrame:
    """Per spec arm: its search's trial-epochs and CPU-seconds (every replicate), and the ratio of its trial-epochs
    to the mean of the Optuna arms'."""
    trials = tables.trials
    search = trials[trials["phase"] == SEARCH]
    rows = []
    for arm, arm_spec in tables.spec.arms.items():
        mine = search[search["arm"] == arm]
        rows.append({"arm": arm, "search": "pbt" if arm_spec.is_pbt else "optuna",
                     "trials": len(mine), "trial_epochs": int(mine["epochs_done"].sum()),
                     "cpu_seconds": float(mine["wall_time_s"].sum() * tables.spec.cpus_per_trial)})
    table = pd.DataFrame(rows, columns=["arm", "search", "trials", "trial_epochs", "cpu_seconds"])
    optuna = table.loc[table["search"] == "optuna", "trial_epochs"]
    reference = float(optuna.mean()) if len(optuna) else float("nan")
    table["vs_optuna_mean"] = table["trial_epochs"] / reference if reference else float("nan")
    return table


def freedom_table(tables: StudyTables) -> pd.DataFrame:
    """One row per key that some arm searches and another arm that has the key holds constant: the key, the arms
    that search it, and each arm that holds it with its value."""
    spec = tables.spec
    keys = {}
    for arm in spec.arms:
        try:
            keys[arm] = flatten(config_from_dict(trial_config(spec, arm, {})).to_dict())
        except Exception:  # noqa: BLE001 - a config the saved spec cannot build any more names nothing here
            keys[arm] = {}
    rows = []
    for key in sorted({k for arm in spec.arms for k in searched_keys(tables, arm)}):
        searching = [arm for arm in spec.arms if key in searched_keys(tables, arm)]
        holding = [arm for arm in spec.arms if arm not in searching and key in keys[arm]]
        for arm in holding:
            rows.append({"key": key, "searched_in": ", ".join(searching), "held_in": arm, "value": keys[arm][key]})
    return pd.DataFrame(rows, columns=["key", "searched_in", "held_in", "value"])


def fairness_lines(tables: StudyTables, compute: pd.DataFrame, freedom: pd.DataFrame) -> str:
    """The report's fairness notes on compute and freedom."""
    lines = []
    for r in compute.itertuples():
        if r.search == "pbt":
            lines.append(f"- Compute: `{r.arm}` (PBT) trained {r.trial_epochs} trial-epochs in its search, "
                         f"{r.vs_optuna_mean:.2f}x the mean of the Optuna arms' searches (early stopping makes those "
                         "cheaper than budget x epochs).")
    optuna = compute[compute["search"] == "optuna"]
    if len(optuna) > 1:
        low, high = optuna.loc[optuna["trial_epochs"].idxmin()], optuna.loc[optuna["trial_epochs"].idxmax()]
        lines.append(f"- Compute: the Optuna arms' searches trained {low.trial_epochs} (`{low.arm}`) to "
                     f"{high.trial_epochs} (`{high.arm}`) trial-epochs.")
    for key, group in freedom.groupby("key", sort=False):
        held = ", ".join(f"`{r.held_in}` ({r.value})" for r in group.itertuples())
        lines.append(f"- Freedom: `{key}` is searched in {', '.join(f'`{a}`' for a in group['searched_in'].iloc[0].split(', '))} "
                     f"but held constant in {held}.")
    if freedom.empty:
        lines.append("- Freedom: no key is searched in one arm and held constant in another arm that has it.")
    return "\n".join(lines) + "\n"
