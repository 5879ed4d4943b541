"""Tuning effort: the expected best of n search trials per arm, against n and against trial-epochs
(``tables/expected_best.csv``), and the spread of the search replicates (``tables/replicate_spread.csv``): how
much of the variance is the search's own (``analysis.tuning``)."""

from __future__ import annotations

import pandas as pd

from .. import tuning
from ..load import StudyTables
from .base import Computed, Section
from .text import link, markdown_table


def _expected_summary(table: pd.DataFrame) -> pd.DataFrame:
    """The expected-best table at n = 1, the middle and the whole budget of each arm."""
    if table.empty:
        return table
    keep = [group.iloc[sorted({0, len(group) // 2, len(group) - 1})] for _, group in table.groupby("arm", sort=False)]
    return pd.concat(keep)[["arm", "n", "trial_epochs", "expected", "low", "high", "p_qualifying"]]


def _replicate_lines(study: StudyTables, spread: pd.DataFrame) -> str:
    """The search replicates' spread, or why there is none."""
    if study.spec.search_replicates < 2:
        return ("One search per arm (`search_replicates: 1`): the report cannot separate the search's own variance "
                "from the seeds'.\n")
    summary = spread.drop_duplicates("arm")[["arm", "spread", "sd_between", "sd_within", "search_share"]]
    return (f"### Search replicates\n\nEach arm's search ran {study.spec.search_replicates} times with sampler seeds "
            "derived apart; each replicate's pick was confirmed on the same seeds. Per arm: the spread of the "
            "replicates' mean selection metric, the standard deviation between replicates and within them (between "
            "seeds), and the share of the variance that is the search's own. " + link("replicate_spread") + "\n\n"
            + markdown_table(summary))


class Tuning(Section):
    def compute(self, study: StudyTables, computed: Computed) -> dict[str, pd.DataFrame]:
        return {"expected_best": tuning.expected_best(study), "replicate_spread": tuning.replicate_spread(study)}

    def render(self, study: StudyTables, computed: Computed) -> str:
        return f"""\
The expected best {study.spec.selection.metric} among n search trials of each arm (feasible trials that ran every
epoch; Dodge et al. 2019, exact from the order statistics, 95% bootstrap band), against n and against the
trial-epochs n trials cost: at equal tuning effort, which arm is ahead. {link("expected_best")}

{markdown_table(_expected_summary(computed["expected_best"]))}
{_replicate_lines(study, computed["replicate_spread"])}"""


SECTION = Tuning("tuning", "Tuning effort", tables=("expected_best", "replicate_spread"))
