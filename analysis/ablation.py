"""The causal answers to the open questions: the ablation around one arm's confirmed configuration
(``study.phases.ablate``, planned in ``<study>/ablate.json``).

Each option that ran is compared with the centre — the arm's confirmation runs of its confirmed configuration,
which every option's run names as its ``source_trial`` on the same seed — paired by seed on the ablation's seeds,
at every budget of the anytime comparison, on the spec's objectives and selection metric, with the equivalence
margins (``analysis.compare.paired_table``: a run that missed the constraints ranks below every feasible one, the
difference is over the seeds where both runs are feasible). One centre and one configuration per option: the
search is no part of the comparison, so the verdict is per seed. Holm's correction is over one family per table:
every option of every question at one budget on one metric (``analysis.stats``), so that sixteen options do not
buy sixteen chances of a ``better``; a difference inside the equivalence margin is ``equivalent`` (noted
"detectably different" when the difference test rejects too), never ``better``. Options that ran nothing are
listed as the plan says: ``same as the centre`` or ``not applicable: <reason>``.

Tables: ``ablation`` (every comparison) and ``ablation_answers`` (one row per question and option: the verdict at
the whole run on the selection metric, its effect and 95% interval, the budgets where the option differs, and its
feasible seeds). As for the winner against fixed λ, an option ``better`` on the selection metric is not an
improvement when it met the constraints on fewer seeds than the spec has, or is worse on another objective: its
answer says so in the same line.
"""

from __future__ import annotations

import pandas as pd

from study.phases.ablate import RUNS, AblationPlan, read_plan
from study.protocol.plan import ablate_seeds

from .compare import paired_table
from .runs import confirm_runs, confirmation_winner, feasible_share
from .load import StudyTables
from .stats import BETTER, NOT_TESTED, WORSE, describe

KEYS = ["axis", "option", "label"]
ANSWER_COLUMNS = [*KEYS, "status", "reason", "metric", "verdict", "mean_diff", "ci_low", "ci_high", "p_holm",
                  "p_equivalent_holm", "detectably_different", "n_pairs", "n_feasible_pairs", "margin", "differs_at",
                  "feasible_seeds", "answer"]


def ablation_plan(tables: StudyTables) -> AblationPlan | None:
    """The study's ``ablate.json`` (None before the ablation was planned, or without one)."""
    return read_plan(tables.study_dir)


def paired_vs_centre(tables: StudyTables, plan: AblationPlan | None) -> pd.DataFrame:
    """Every option that ran against the centre at every budget on the tracked objectives, on the ablation's
    seeds; one Holm family per budget and metric over every option of every question (the whole table)."""
    options = {o.label: o for o in plan.options if o.status == RUNS} if plan is not None else {}
    if not options:
        return pd.DataFrame(columns=KEYS)
    tracked = [o.metric for o in tables.spec.tracked_objectives()]
    centre = confirm_runs(tables, plan.arm)
    centre = centre[centre["source_trial"] == plan.centre].assign(replicate=0)  # one configuration: its runs
    table = paired_table(tables, [(label, plan.arm) for label in options], ["budget", "metric"],
                         runs={plan.arm: centre}, seeds=list(ablate_seeds(tables.spec)))
    table = table[table["metric"].isin(tracked)].reset_index(drop=True)
    table = table.assign(axis=[options[label].axis for label in table["arm"]],
                         option=[options[label].option for label in table["arm"]], label=table["arm"])
    return table[[*KEYS, *(c for c in table.columns if c not in KEYS)]]


def answers(tables: StudyTables, plan: AblationPlan | None, paired: pd.DataFrame) -> pd.DataFrame:
    """One row per question and option: the verdict at the whole run on the selection metric (or why it did not
    run), its effect and interval, and the budgets where it is better or worse than the centre."""
    metric = tables.spec.selection.metric
    rows = []
    by_label = {o.label: o for o in plan.options} if plan is not None else {}
    for o in plan.options if plan is not None else ():
        row = {"axis": o.axis, "option": o.option, "label": o.label, "status": o.status, "reason": o.reason,
               "metric": metric, "verdict": o.status, "differs_at": "",
               "answer": o.status + (f": {o.reason}" if o.reason else "")}
        if o.same_as in by_label:  # another option runs this configuration (study.phases.ablate): answered there
            first = by_label[o.same_as]
            row["answer"] = f"same configuration as {first.axis} `{first.option}` (run once, answered there)"
        if o.status == RUNS:
            mine = paired[(paired["label"] == o.label) & (paired["metric"] == metric)] if not paired.empty else paired
            differs = mine[mine["verdict"].isin([BETTER, WORSE])] if not mine.empty else mine
            row["differs_at"] = ", ".join(f"{r.budget:g} {r.verdict}" for r in differs.itertuples())
            final = mine[mine["budget"] == 1.0] if not mine.empty else mine
            if final.empty:
                row.update(verdict=NOT_TESTED, answer=f"{NOT_TESTED} (no finished run at the whole run)")
            else:
                best = final.iloc[0]
                row.update({k: best[k] for k in ("verdict", "mean_diff", "ci_low", "ci_high", "p_holm",
                                                 "p_equivalent_holm", "detectably_different", "n_pairs",
                                                 "n_feasible_pairs", "margin")})
                row["answer"] = describe(best) + _caveat(tables, plan, o.label, paired, best.verdict)
            row["feasible_seeds"] = "{}/{}".format(*feasible_share(tables, o.label))
            twins = [f"{t.axis} `{t.option}`" for t in plan.options if t.same_as == o.label]
            if twins:  # the options that resolved to this configuration, named with it
                row["answer"] += f" (one configuration with {', '.join(twins)})"
        rows.append(row)
    return pd.DataFrame(rows, columns=ANSWER_COLUMNS)


def _centre_feasible(tables: StudyTables, plan: AblationPlan) -> int:
    """The centre's feasible confirmation runs on the ablation's seeds (the runs each option is paired with)."""
    runs = confirm_runs(tables, plan.arm)
    centre = runs[(runs["source_trial"] == plan.centre) & runs["seed"].isin(ablate_seeds(tables.spec))
                  & runs["feasible"].astype(bool)]
    return int(centre["seed"].nunique())


def _caveat(tables: StudyTables, plan: AblationPlan, label: str, paired: pd.DataFrame, verdict: str) -> str:
    """What the verdict on the selection metric leaves out: seeds on which the option missed the constraints
    (against the centre's), and, for a ``better`` option, the objectives on which it is worse at the whole run."""
    feasible, seeds = feasible_share(tables, label)
    centre = _centre_feasible(tables, plan)
    worse = paired[(paired["label"] == label) & (paired["budget"] == 1.0) & (paired["verdict"] == WORSE)
                   & paired["metric"].isin([o.metric for o in tables.spec.objectives])]
    notes = [f"feasible on {feasible}/{seeds} runs (the centre {centre}/{seeds})"] if feasible < seeds else []
    if verdict == BETTER and not worse.empty:
        notes.append("worse on " + ", ".join(worse["metric"]))
    if not notes:
        return ""
    return ("; not an improvement: " if verdict == BETTER else "; ") + "; ".join(notes)


def answer_lines(tables: StudyTables, plan: AblationPlan | None, table: pd.DataFrame) -> list[str]:
    """One line per question (Markdown list items): every option's answer, paired with the centre by seed."""
    if plan is None:
        if tables.spec.ablate is None:
            return []
        return [f"- Ablation around `{tables.spec.ablate.arm}`: not planned yet (it starts once that arm's "
                "confirmation runs have all ended)."]
    if plan.centre is None:
        return [f"- Ablation around `{plan.arm}`: nothing ran (it has no confirmed configuration)."]
    lines = []
    where = (f"ablation around `{plan.arm}`'s confirmed configuration `{plan.centre}`, {len(plan.runs)} seeds, "
             f"on {tables.spec.selection.metric}")
    for axis, group in table.groupby("axis", sort=False):
        parts = []
        for r in group.itertuples():
            differs = f" (differs at budget {r.differs_at})" if r.differs_at and r.status == RUNS else ""
            parts.append(f"`{r.option}` {r.answer}{differs}")
        lines.append(f"- {axis} ({where}): " + "; ".join(parts) + ".")
    winner = confirmation_winner(tables, plan.arm)
    if winner != plan.centre:
        lines.append(f"- Note: the ablation's centre `{plan.centre}` is not `{plan.arm}`'s confirmed configuration "
                     f"in the tables (`{winner}`): its runs are not paired with the centre's.")
    return lines
