"""One line per arm for the report's Conclusions: its verdict on the selection metric against the reference arm,
and in the same line everything that qualifies it — the share of its confirmation runs (seeds x search replicates)
that met the constraints,
the constraint metrics' values, its standing on every other objective, and a warning when the search trial it
confirmed met the constraints only to miss them on the confirmation seeds.
"""

from __future__ import annotations

import pandas as pd

from .compare import full_budget, main_arms
from .conclusions import final_mean
from .runs import feasible_share, winner_runs
from .load import StudyTables
from .stats import describe
from .trajectory import outside_box


def _constraint_values(tables: StudyTables, runs: pd.DataFrame) -> str:
    """Each constraint metric's values on the runs, with the constraint (``val_exact_match_A 0.11, 0.34 (needs
    >= 0.9)``); a run without a value shows as ``–``."""
    parts = []
    for constraint in tables.spec.parsed_constraints():
        column = f"final_{constraint.metric}"
        values = runs[column].astype(float) if column in runs else pd.Series(float("nan"), index=runs.index)
        shown = ", ".join("–" if v != v else f"{v:.3g}" for v in values)
        parts.append(f"{constraint.metric} {shown or '–'} (needs {constraint.op} {constraint.threshold:g})")
    return "; ".join(parts)


def _search_warning(tables: StudyTables, arm: str, runs: pd.DataFrame) -> str:
    """A warning when the confirmed search trial was feasible but some confirmation seeds were not."""
    source = runs["source_trial"].dropna()
    if source.empty or not tables.spec.constraints:
        return ""
    trials = tables.trials
    searched = trials[(trials["phase"] == "search") & (trials["arm"] == arm) & (trials["trial_id"] == source.iloc[0])]
    feasible, runs_expected = feasible_share(tables, arm)
    if searched.empty or not bool(searched["feasible"].iloc[0]) or feasible == runs_expected:
        return ""
    return (f" **Caution:** its search trial met the constraints ({_constraint_values(tables, searched)}) but "
            f"{runs_expected - feasible} of {runs_expected} confirmation runs did not: the search result did not "
            "generalise.")


ELBO = "val_loss_unweighted"


def _rate(runs: pd.DataFrame, reference: pd.DataFrame) -> str:
    """The KL nats each VAE's codes use (most of the negative ELBO of a run that reconstructs), against the
    reference's."""
    def kl(frame: pd.DataFrame) -> str:
        means = (final_mean(frame, f"kl_{v}") for v in "AB")
        return " / ".join("–" if m != m else f"{m:.1f}" for m in means)
    return f" (KL A / B {kl(runs)} nats against {kl(reference)})"


def standing_lines(tables: StudyTables, paired: pd.DataFrame, box: pd.DataFrame | None = None) -> list[str]:
    """The Conclusions line of every spec arm: the reference first (its feasibility), then each other arm; an arm
    whose weights left the reference arm's search box (``analysis.trajectory.box_check``) is said not to be
    fairly compared."""
    selection = tables.spec.selection
    reference = tables.fixed_arm()
    final = full_budget(paired)
    lines = []
    for arm in main_arms(tables):
        runs = winner_runs(tables, arm)
        feasible, expected = feasible_share(tables, arm)
        qualifier = (f"feasible on {feasible}/{expected} runs ({_constraint_values(tables, runs)})"
                     if tables.spec.constraints else f"{feasible}/{expected} runs finished")
        if arm == reference:
            lines.append(f"- `{arm}` (reference): {qualifier}.")
            continue
        mine = final[final["arm"] == arm] if not final.empty else final
        head = mine[mine["metric"] == selection.metric]
        if head.empty:
            lines.append(f"- `{arm}` against `{reference}`: not compared (no seed finished in both); {qualifier}.")
            continue
        others = [f"{o.metric} {describe(row)}" + (_rate(runs, winner_runs(tables, reference)) if o.metric == ELBO else "")
                  for o in tables.spec.objectives if o.metric != selection.metric
                  for row in mine[mine["metric"] == o.metric].itertuples()]
        outside = outside_box(tables, box, arm) if box is not None else []
        unfair = (" **Not a fair comparison:** " + "; ".join(outside) + ".") if outside else ""
        lines.append(f"- `{arm}` − `{reference}` on {selection.metric}: {describe(head.iloc[0])}; {qualifier}"
                     + (f"; {'; '.join(others)}" if others else "") + "." + _search_warning(tables, arm, runs)
                     + unfair)
    return lines
