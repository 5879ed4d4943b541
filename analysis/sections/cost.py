"""Cost: trials and CPU-hours per arm and phase (``tables/cost.csv``), the slot utilisation
(``tables/utilisation.csv``) and how many trials ran at once over the study's span (``tables/concurrency.csv``,
``analysis.utilisation``), and every trial that diverged, failed, was left unfinished or was restarted."""

from __future__ import annotations

import pandas as pd

from ..load import StudyTables
from ..utilisation import concurrency_table, utilisation_lines, utilisation_table
from .base import Computed, Section
from .text import link, markdown_table


def cost_table(study: StudyTables) -> pd.DataFrame:
    """Per arm and phase: trials, each status, trial-epochs, CPU-seconds (wall time x CPUs per trial), wall hours
    and CPU-hours."""
    trials = study.trials
    counts = pd.crosstab([trials["arm"], trials["phase"]], trials["status"])
    grouped = trials.groupby(["arm", "phase"])
    wall = grouped["wall_time_s"].sum()
    table = counts.assign(trials=counts.sum(axis=1), trial_epochs=grouped["epochs_done"].sum(),
                          cpu_seconds=wall * study.spec.cpus_per_trial, wall_hours=wall / 3600,
                          cpu_hours=wall * study.spec.cpus_per_trial / 3600)
    return table.reset_index()


def _flagged(study: StudyTables) -> str:
    bad = study.trials[~study.trials["usable"]]
    text = "No trial diverged, failed or was left unfinished.\n"
    if not bad.empty:
        lines = [f"- `{r.arm}` {r.phase} `{r.trial_id}`: **{r.status}**" + (f": {r.reason}" if r.reason else "")
                 for r in bad.itertuples()]
        text = (f"{len(bad)} trial(s) did not finish normally (kept in the tables, flagged):\n\n" + "\n".join(lines)
                + "\n")
    restarted = study.trials[study.trials["restarted"]]
    if not restarted.empty:
        lines = [f"- `{r.arm}` {r.phase} `{r.trial_id}`: {r.restarts} restart(s), then **{r.status}**"
                 for r in restarted.itertuples()]
        text += (f"\n{len(restarted)} trial(s) continued from their saved state after their worker died or the "
                 "driver was killed (records continue where they stopped):\n\n" + "\n".join(lines) + "\n")
    return text


class Cost(Section):
    def compute(self, study: StudyTables, computed: Computed) -> dict[str, pd.DataFrame]:
        return {"cost": cost_table(study), "utilisation": utilisation_table(study),
                "concurrency": concurrency_table(study)}

    def render(self, study: StudyTables, computed: Computed) -> str:
        cost = computed["cost"]
        return f"""\
{len(study.trials)} trials, {cost['wall_hours'].sum():.3g} wall-hours of trial time,
{cost['cpu_hours'].sum():.3g} CPU-hours ({study.spec.cpus_per_trial} CPU per trial). {link("cost")}

{markdown_table(cost)}
{utilisation_lines(study)}{link("utilisation")}

Trials running at once over the study's span, in equal windows (seconds after the first start). {link("concurrency")}

{markdown_table(computed["concurrency"])}
{_flagged(study)}"""


SECTION = Cost("cost", "Cost", tables=("cost", "utilisation", "concurrency"))
