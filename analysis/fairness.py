"""Is the comparison fair? Equal compute and equal freedom, read from the spec and the tables, against the
reference arm every other arm is compared with (``StudyTables.reference_arm``: the spec's ``reference``, else the
first fixed-λ arm).

**Compute.** The cost table (``analysis.sections.cost.cost_table``) gives trial-epochs and CPU-seconds per arm and phase.
A PBT arm's population trains population x epochs trial-epochs whatever happens; an Optuna arm's search with early
stopping consumes fewer than budget x epochs; the fixed-λ front counts as its arm's search (its tuning compute).
:func:`compute_table` sets each arm's search trial-epochs against
the reference's and against the mean of the Optuna arms', and states the ratios.

**Freedom.** A key that one arm searches and another arm that has it holds constant (the learning rate, say) is a
handicap, not a comparison: :func:`freedom_table` names each, with the constant it was held at, and whether the
reference is the arm that searches it or the one that holds it.
"""

from __future__ import annotations

import pandas as pd

from diffctl.config import config_from_dict
from study.protocol import trial_config
from study.protocol.plan import FRONT, SEARCH

from .load import StudyTables, flatten


def searched_keys(tables: StudyTables, arm: str) -> set[str]:
    """The flat keys an arm's search moves: its space, or a PBT arm's mutations."""
    arm_spec = tables.spec.arms[arm]
    return set(arm_spec.pbt.mutations) if arm_spec.is_pbt else set(arm_spec.space)


def compute_table(tables: StudyTables) -> pd.DataFrame:
    """Per spec arm: its search's trial-epochs and CPU-seconds (every replicate), and the ratio of its trial-epochs
    to the reference arm's (``vs_reference``, the reference named in ``reference``) and to the mean of the Optuna
    arms' (``vs_optuna_mean``)."""
    trials = tables.trials
    search = trials[trials["phase"].isin((SEARCH, FRONT))]  # the front is its arm's tuning compute
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
    arm = tables.reference_arm()
    own = table.loc[table["arm"] == arm, "trial_epochs"]
    table.insert(1, "reference", arm)
    table["vs_reference"] = table["trial_epochs"] / float(own.iloc[0]) if len(own) and own.iloc[0] else float("nan")
    return table


def freedom_table(tables: StudyTables) -> pd.DataFrame:
    """One row per key that some arm searches and another arm that has the key holds constant: the key, the arms
    that search it, each arm that holds it with its value, the reference arm and its part (``searches``: the
    reference searches the key another arm holds; ``holds``: the reference is the arm that holds it; else
    empty)."""
    spec = tables.spec
    keys = {}
    for arm in spec.arms:
        try:
            keys[arm] = flatten(config_from_dict(trial_config(spec, arm, {})).to_dict())
        except Exception:  # noqa: BLE001 - a config the saved spec cannot build any more names nothing here
            keys[arm] = {}
    rows = []
    reference = tables.reference_arm()
    for key in sorted({k for arm in spec.arms for k in searched_keys(tables, arm)}):
        searching = [arm for arm in spec.arms if key in searched_keys(tables, arm)]
        holding = [arm for arm in spec.arms if arm not in searching and key in keys[arm]]
        for arm in holding:
            part = "holds" if arm == reference else "searches" if reference in searching else ""
            rows.append({"key": key, "searched_in": ", ".join(searching), "held_in": arm, "value": keys[arm][key],
                         "reference": reference, "reference_part": part})
    return pd.DataFrame(rows, columns=["key", "searched_in", "held_in", "value", "reference", "reference_part"])


def _named(arm: str, reference: str | None) -> str:
    return f"`{arm}` (the reference)" if arm == reference else f"`{arm}`"


def fairness_lines(tables: StudyTables, compute: pd.DataFrame, freedom: pd.DataFrame) -> str:
    """The report's fairness notes on compute and freedom, against the reference arm."""
    reference = tables.reference_arm()
    lines = [f"- Reference: every verdict, box, compute ratio and freedom note is against the "
             f"{tables.reference_text()}" + (" (named by the spec's `reference`)." if tables.spec.reference else ".")]
    own = compute[compute["arm"] == reference]
    if len(own) and len(compute) > 1:
        ratios = ", ".join(f"`{r.arm}` {r.vs_reference:.2f}x" for r in compute.itertuples() if r.arm != reference)
        lines.append(f"- Compute against the reference: `{reference}` trained {int(own['trial_epochs'].iloc[0])} "
                     f"search trial-epochs; the other arms' searches, as a multiple of that: {ratios}.")
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
        held = ", ".join(f"{_named(r.held_in, reference)} ({r.value})" for r in group.itertuples())
        searching = ", ".join(_named(a, reference) for a in group["searched_in"].iloc[0].split(", "))
        lines.append(f"- Freedom: `{key}` is searched in {searching} but held constant in {held}.")
    if freedom.empty:
        lines.append("- Freedom: no key is searched in one arm and held constant in another arm that has it.")
    return "\n".join(lines) + "\n"
