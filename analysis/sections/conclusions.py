"""Conclusions: the answer at a glance (``tables/conclusions.csv``, one row per arm against the reference:
``analysis.conclusions``), then the same in prose — the winner, one line per arm (``analysis.standing``), the
fixed-λ front (``tables/front.csv``, ``analysis.front``), the searches that found nothing feasible, the trajectory
levels, the ablation's answers, collapse and the observational answers — and how the comparisons are made."""

from __future__ import annotations

import pandas as pd

from .. import ablation, compare, front, trajectory
from ..collapse import AT_FLOOR, COLLAPSED_WEIGHTS, RECON_COLLAPSED, collapse_sentence
from ..conclusions import conclusions_cells, conclusions_table
from ..load import StudyTables
from ..questions import MIN_GROUP
from ..standing import standing_lines
from ..stats import ALPHA, POWER
from .base import Computed, Section
from .text import link, markdown_table


def _winner_sentence(study: StudyTables, computed: Computed) -> str:
    winner, sentence = compare.winner(study, computed["paired_vs_fixed"])
    if winner is not None and (outside := trajectory.outside_box(study, computed["box_check"], winner)):
        sentence += " Not a fair comparison: its weights left the reference box (" + "; ".join(outside) + ")."
    return sentence


def _lines(study: StudyTables, computed: Computed) -> list[str]:
    lines = [f"- {_winner_sentence(study, computed)}"]
    lines += standing_lines(study, computed["paired_vs_fixed"], computed["box_check"])
    lines += front.front_lines(study, computed["front"], computed["front_margins"])
    lines += compare.infeasible_pick_lines(study) + trajectory.level_lines(study, computed["trajectory"])
    lines += ablation.answer_lines(study, ablation.ablation_plan(study), computed["ablation_answers"])
    collapse = computed["collapse"]
    if not collapse.empty:
        lines.append(f"- Collapse per arm, over its search and confirmation trials: {collapse_sentence(collapse)} "
                     f"(weights: >= {COLLAPSED_WEIGHTS} of 4 weights at their floor in >= {AT_FLOOR:.0%} of the last "
                     f"epoch's steps; reconstruction: w_recon at its floor and val exact match < {RECON_COLLAPSED:g}).")
    for row in computed["questions"].itertuples():
        if row.arm is not None and isinstance(row.arm, str):
            lines.append(f"- {row.question} (`{row.key}`, arm `{row.arm}`, observational): {row.answer}.")
    return lines


def _selection_note(study: StudyTables) -> str:
    top_k = max((int(r["source_trial"].nunique()) for _, r in study.trials[study.trials["phase"] == "confirm"]
                 .groupby("arm")), default=1)
    if top_k <= 1:
        return ""
    return ("Several configurations per arm were confirmed; the one kept was chosen on the same seeds that then "
            "test it (most feasible seeds first), so its confirmation mean is optimistic.\n")


METHOD = f"""\
A run is the whole pipeline, its search included (`analysis.pipeline`): runs paired by confirmation seed, nested
in their search replicates; a run that missed the constraints ranks below every feasible one (two such tie), and
differences are over the pairs in which both runs are feasible (`n_feasible_pairs`). `level` pipeline: the 95%
interval is a bootstrap over replicates then seeds and the p-value Welch's t-test over the replicates; `level`
seed (an arm with one replicate: the search's own variance unmeasured): the paired t-test and t-interval over
seeds. Holm-corrected over each family (every arm against the reference on one metric at one budget);
`equivalent` when the two one-sided tests against the spec's margin reject (corrected), else `better`/`worse`
when the corrected p < {ALPHA:g} and the interval excludes zero — never `better` for an arm feasible on fewer of
its runs than the reference —, `inconclusive` otherwise (with the smallest difference the design could detect at
{POWER:.0%} power), `not tested` with fewer than two pairs. P(beats ref): the chance that one run of the arm's
pipeline ranks above one of the reference's on the same seed (two-level bootstrap interval; "too few runs" under
three an arm). Every spec seed counts: a diverged, failed or missing run is an infeasible seed. Open questions from the search: Kruskal-Wallis with permutation p-values across options with
>= {MIN_GROUP} distinct configurations each (observational: TPE varied the other parameters too). Weighted
training losses are never compared across arms.
"""


class Conclusions(Section):
    def compute(self, study: StudyTables, computed: Computed) -> dict[str, pd.DataFrame]:
        points = front.front_table(study)
        replicates = front.replicate_margins(study, points)
        margins = front.front_margins(study, points, replicates)
        table = conclusions_table(study, computed["paired_vs_fixed"], computed["box_check"], computed["compute"],
                                  computed["freedom"], computed["audit_summary"])
        return {"conclusions": table.merge(margins, on="arm", how="left"), "front": points,
                "front_margins": margins, "front_replicates": replicates}

    def render(self, study: StudyTables, computed: Computed) -> str:
        table = computed["conclusions"]
        head = "" if table.empty else f"{link('conclusions')}\n\n{markdown_table(conclusions_cells(study, table))}\n"
        return head + "\n".join(_lines(study, computed)) + "\n\n" + METHOD + _selection_note(study)


SECTION = Conclusions("conclusions", "Conclusions", tables=("conclusions", "front", "front_replicates"),
                      kept=("front_margins",))
