"""report.md and tables/*.csv of a study directory: the conclusions, the tables behind them, the plots, the cost.

Every file is written atomically. The report links each CSV it summarises so that the numbers can be taken
further in pandas (``pd.read_csv``) or from trials.parquet / epochs.parquet.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from diffctl.files import atomic_write_text
from diffctl.provenance import code_version, describe

from .collapse import AT_FLOOR, COLLAPSED_WEIGHTS, RECON_COLLAPSED, collapse_sentence
from .conclusions import conclusions_cells
from .compare import EPOCHS_TO_EXACT, EXACT_TARGET, auc_metric, full_budget
from .header import code_line, metric_notes
from .load import EPOCHS_FILE, TRIALS_FILE, StudyTables
from .questions import MIN_GROUP
from .standing import standing_lines
from .stats import ALPHA, POWER
from .utilisation import utilisation_lines

TABLES_DIR = "tables"
REPORT_FILE = "report.md"


@dataclass
class Findings:
    """Everything the analysis computed, by table name (CSV file stem), plus the winner sentence and plots."""

    tables: dict[str, pd.DataFrame]
    winner: str | None
    winner_sentence: str
    plots: dict[str, Path] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    extra_conclusions: list[str] = field(default_factory=list)  # more Conclusions lines (e.g. trajectory verdicts)
    ablation_lines: list[str] = field(default_factory=list)  # the causal answer per question (analysis.ablation)
    pbt_lines: str = ""  # the PBT arms' section (analysis.pbt)
    audit_lines: str = ""  # the pruning audit (analysis.audit)
    fairness_lines: str = ""  # equal compute and freedom (analysis.fairness)


def _cell(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    if value is None:
        return ""
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(frame: pd.DataFrame, max_rows: int = 40) -> str:
    """A GitHub-flavoured Markdown table of ``frame`` (floats to 4 significant digits)."""
    if frame.empty:
        return "_(empty)_\n"
    shown = frame.head(max_rows)
    lines = ["| " + " | ".join(str(c) for c in shown.columns) + " |",
             "|" + "|".join("---" for _ in shown.columns) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in shown.itertuples(index=False)]
    if len(frame) > max_rows:
        lines.append(f"\n_({len(frame) - max_rows} more rows in the CSV)_")
    return "\n".join(lines) + "\n"


def cost_table(tables: StudyTables) -> pd.DataFrame:
    """Per arm and phase: trials, each status, trial-epochs, CPU-seconds (wall time x CPUs per trial), wall hours
    and CPU-hours."""
    trials = tables.trials
    counts = pd.crosstab([trials["arm"], trials["phase"]], trials["status"])
    grouped = trials.groupby(["arm", "phase"])
    wall = grouped["wall_time_s"].sum()
    table = counts.assign(trials=counts.sum(axis=1), trial_epochs=grouped["epochs_done"].sum(),
                          cpu_seconds=wall * tables.spec.cpus_per_trial, wall_hours=wall / 3600,
                          cpu_hours=wall * tables.spec.cpus_per_trial / 3600)
    return table.reset_index()


def confirm_overview(summary: pd.DataFrame) -> pd.DataFrame:
    """arm x metric, each cell 'mean [CI low, CI high] (n)'."""
    if summary.empty:
        return summary
    cells = summary.assign(cell=[
        f"{r.mean:.4g} [{r.ci_low:.4g}, {r.ci_high:.4g}] (n={r.n})" if r.n else "" for r in summary.itertuples()
    ])
    return cells.pivot(index="arm", columns="metric", values="cell").reindex(
        columns=list(dict.fromkeys(summary["metric"]))).reset_index()


def write_tables(study_dir: Path, findings: Findings) -> dict[str, Path]:
    """Write every findings table as ``tables/<name>.csv``."""
    out = study_dir / TABLES_DIR
    out.mkdir(exist_ok=True)
    paths = {}
    for name, frame in findings.tables.items():
        paths[name] = out / f"{name}.csv"
        atomic_write_text(paths[name], frame.to_csv(index=False))
    return paths


def _link(name: str) -> str:
    return f"[{name}.csv]({TABLES_DIR}/{name}.csv)"


def _flagged(tables: StudyTables) -> str:
    bad = tables.trials[~tables.trials["usable"]]
    text = "No trial diverged, failed or was left unfinished.\n"
    if not bad.empty:
        lines = [f"- `{r.arm}` {r.phase} `{r.trial_id}`: **{r.status}**" + (f": {r.reason}" if r.reason else "")
                 for r in bad.itertuples()]
        text = f"{len(bad)} trial(s) did not finish normally (kept in the tables, flagged):\n\n" + "\n".join(lines) + "\n"
    restarted = tables.trials[tables.trials["restarted"]]
    if not restarted.empty:
        lines = [f"- `{r.arm}` {r.phase} `{r.trial_id}`: {r.restarts} restart(s), then **{r.status}**"
                 for r in restarted.itertuples()]
        text += (f"\n{len(restarted)} trial(s) continued from their saved state after their worker died or the "
                 "driver was killed (records continue where they stopped):\n\n" + "\n".join(lines) + "\n")
    return text


def _conclusions(tables: StudyTables, findings: Findings) -> str:
    table = findings.tables.get("conclusions", pd.DataFrame())
    head = (f"{_link('conclusions')}\n\n{markdown_table(conclusions_cells(tables, table))}\n" if not table.empty else "")
    lines = [f"- {findings.winner_sentence}"]
    lines += standing_lines(tables, findings.tables.get("paired_vs_fixed", pd.DataFrame()),
                            findings.tables.get("box_check", pd.DataFrame()))
    lines += findings.extra_conclusions
    collapse = findings.tables.get("collapse", pd.DataFrame())
    if not collapse.empty:
        lines.append(f"- Collapse per arm, over its search and confirmation trials: {collapse_sentence(collapse)} "
                     f"(weights: >= {COLLAPSED_WEIGHTS} of 4 weights at their floor in >= {AT_FLOOR:.0%} of the last "
                     f"epoch's steps; reconstruction: w_recon at its floor and val exact match < {RECON_COLLAPSED:g}).")
    for row in findings.tables.get("questions", pd.DataFrame()).itertuples():
        if row.arm is not None and isinstance(row.arm, str):
            lines.append(f"- {row.question} (`{row.key}`, arm `{row.arm}`, observational): {row.answer}.")
    return head + "\n".join(lines) + "\n"


def _sampling(tables: StudyTables) -> str:
    """Per arm: how many search trials TPE drew at random (its start-up) and how many from its model."""
    search = tables.trials[tables.trials["phase"] == "search"]
    if "sampling" not in search:
        return ""
    parts = []
    for arm, group in search.groupby("arm", sort=False):
        if arm in tables.pbt_arms():  # drawn by population based training (its own section)
            continue
        counts = group["sampling"].map(lambda v: v if isinstance(v, str) else "unknown").value_counts()
        start = tables.spec.arms[arm].startup_trials if arm in tables.spec.arms else None
        parts.append(f"`{arm}` {counts.get('random', 0)} random, {counts.get('model', 0)} model-guided"
                     + (f" (start-up {start})" if start is not None else ""))
    return "Search trials by how TPE drew them: " + "; ".join(parts) + ".\n" if parts else ""


def _selection_note(tables: StudyTables) -> str:
    top_k = max((int(r["source_trial"].nunique()) for _, r in tables.trials[tables.trials["phase"] == "confirm"]
                 .groupby("arm")), default=1)
    if top_k <= 1:
        return ""
    return ("Several configurations per arm were confirmed; the one kept was chosen on the same seeds that then "
            "test it (most feasible seeds first), so its confirmation mean is optimistic.\n")


PAIRED_COLUMNS = ["arm", "reference", "budget", "epoch", "metric", "level", "n_pairs", "n_feasible_pairs", "mean_diff",
                  "ci_low", "ci_high", "p_holm", "p_equivalent_holm", "detectable", "p_better", "censored_arm",
                  "censored_reference", "verdict"]


def _paired_columns(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[[c for c in PAIRED_COLUMNS if c in frame]] if not frame.empty else frame


def _selection_rows(tables: StudyTables, paired: pd.DataFrame) -> pd.DataFrame:
    return paired[paired["metric"] == tables.spec.selection.metric] if not paired.empty else paired


def _outside_first(box: pd.DataFrame) -> pd.DataFrame:
    return box.sort_values("inside", kind="stable") if not box.empty else box


def _anytime(tables: StudyTables, paired: pd.DataFrame) -> pd.DataFrame:
    names = [tables.spec.selection.metric, auc_metric(tables).metric, EPOCHS_TO_EXACT]
    return paired[paired["metric"].isin(names)] if not paired.empty else paired


def _expected_summary(table: pd.DataFrame) -> pd.DataFrame:
    """The expected-best table at n = 1, the middle and the whole budget of each arm."""
    if table.empty:
        return table
    keep = [group.iloc[sorted({0, len(group) // 2, len(group) - 1})] for _, group in table.groupby("arm", sort=False)]
    return pd.concat(keep)[["arm", "n", "trial_epochs", "expected", "low", "high", "p_qualifying"]]


def _replicate_lines(tables: StudyTables, spread: pd.DataFrame) -> str:
    """The search replicates' spread, or why there is none."""
    if tables.spec.search_replicates < 2:
        return ("One search per arm (`search_replicates: 1`): the report cannot separate the search's own variance "
                "from the seeds'.\n")
    summary = spread.drop_duplicates("arm")[["arm", "spread", "sd_between", "sd_within", "search_share"]]
    return (f"### Search replicates\n\nEach arm's search ran {tables.spec.search_replicates} times with sampler seeds "
            "derived apart; each replicate's pick was confirmed on the same seeds. Per arm: the spread of the "
            "replicates' mean selection metric, the standard deviation between replicates and within them (between "
            "seeds), and the share of the variance that is the search's own. " + _link("replicate_spread") + "\n\n"
            + markdown_table(summary))


def _ablation(tables: StudyTables, findings: Findings) -> str:
    """The causal answers first: the ablation around a confirmed configuration, one line per question."""
    if not findings.ablation_lines:
        return "No ablation in this study (a spec's `ablate` section asks for one: the causal answers).\n"
    return ("Ablation: one option at a time changed from the confirmed configuration, everything else equal, each "
            "run paired with the centre's run on its seed; Holm-corrected over every option of every question (one "
            f"family per budget and metric); inside the margin: equivalent. {_link('ablation_answers')} · {_link('ablation')} (every budget and objective)\n\n"
            + "\n".join(findings.ablation_lines) + "\n")


def render(tables: StudyTables, findings: Findings) -> str:
    """The text of report.md."""
    spec, t = tables.spec, findings.tables
    cost = t["cost"]
    objectives = ", ".join(f"{o.metric} ({o.mode})" for o in spec.objectives)
    constraints = "; ".join(spec.constraints) or "none"
    plots = "\n\n".join(f"![{name}]({p.relative_to(tables.study_dir).as_posix()})"
                        for name, p in findings.plots.items())
    notes = "".join(f"- {k}: {v}\n" for k, v in findings.notes.items())
    search_cols = [c for c in t["search"].columns if c not in ("params", "reason")]
    return f"""# Study `{spec.name}`

Directory `{tables.shown_dir()}` · analysed {time.strftime("%Y-%m-%d %H:%M:%S %z")} with {describe(code_version())} ·
objectives {objectives} · constraints {constraints} · selection {spec.selection.metric} ({spec.selection.mode}),
the ranking rule of every stage (feasible first) · confirmation seeds {spec.confirm.seeds} × {spec.search_replicates}
search replicate(s) · {tables.reference_text()}.

{code_line(tables)}

{metric_notes(tables)}

## Conclusions

{_conclusions(tables, findings)}
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
{_selection_note(tables)}
## Cost

{len(tables.trials)} trials, {cost['wall_hours'].sum():.3g} wall-hours of trial time,
{cost['cpu_hours'].sum():.3g} CPU-hours ({spec.cpus_per_trial} CPU per trial). {_link("cost")}

{markdown_table(cost)}
{utilisation_lines(tables)}
Trials running at once over the study's span, in equal windows (seconds after the first start). {_link("concurrency")}

{markdown_table(t.get("concurrency", pd.DataFrame()))}
{_flagged(tables)}
## Fairness

Equal compute, equal freedom, and what early stopping threw away. {_link("compute")} · {_link("freedom")} ·
{_link("pruning_audit")} · {_link("audit_summary")} · the box check is below (Trajectory or destination).

{findings.fairness_lines}
### Pruning audit

Search trials that early stopping stopped, drawn among the best scored at their last rung and trained to the last
epoch on their search seed: would the ranking rule have picked one over its replicate's pick, and by how much?

{findings.audit_lines}
{markdown_table(t["pruning_audit"])}
## Tuning effort

The expected best {spec.selection.metric} among n search trials of each arm (feasible trials that ran every
epoch; Dodge et al. 2019, exact from the order statistics, 95% bootstrap band), against n and against the
trial-epochs n trials cost: at equal tuning effort, which arm is ahead. {_link("expected_best")}

{markdown_table(_expected_summary(t["expected_best"]))}
{_replicate_lines(tables, t["replicate_spread"])}
## Search: Pareto fronts and the selected configuration

`pareto`: on the front of the arm's finished trials over the objectives; `pareto_feasible`: on the front of its
feasible trials; `selected`: the selection rule's pick. {_link("search")}

{_sampling(tables)}
{markdown_table(t["search"][search_cols])}
## Confirmation seeds (winner configuration of each arm)

Mean [95% t-interval] (n seeds) of the final epoch. {_link("confirm_summary")}

{markdown_table(confirm_overview(t["confirm_summary"]))}
## Against the reference arm, paired by seed

Every other arm against the {tables.reference_text()}, at the whole run, every compared metric.
{_link("paired_vs_fixed")} (all budgets)

{markdown_table(_paired_columns(full_budget(t["paired_vs_fixed"])))}
### Anytime: at every budget

The selection metric, the area under its curve (`{auc_metric(tables).metric}`, its mean over the epochs so far)
and `{EPOCHS_TO_EXACT}` (the first epoch with val exact match >= {EXACT_TARGET:g} on both VAEs; a run that has
not reached it counts as the budget + 1, `censored_*` say how many).

{markdown_table(_paired_columns(_anytime(tables, t["paired_vs_fixed"])))}
## Trajectory or destination

Each adaptive arm against its distilled baselines (its own runs' weights and rho held constant from step 0 at
the last epoch's means, `final`, or the whole run's, `mean`; or replayed open loop epoch by epoch, `replay`),
paired by seed at every budget on {tables.spec.selection.metric}, Holm-corrected over the three baselines.
{_link("trajectory")} · {_link("paired_vs_distilled")}

{markdown_table(t["trajectory"])}
{markdown_table(_paired_columns(_selection_rows(tables, t["paired_vs_distilled"])))}
### Box check: could the reference arm's search reach the adaptive arms' weights?

Epoch means of each adaptive arm's weights and rho on its confirmation runs against the search box of the
{tables.reference_text()} (a key it does not search: its constant; none where it holds no constant weights).
{_link("box_check")}

{markdown_table(_outside_first(t["box_check"]))}
## Population based training

Each PBT arm's exploits (a member continuing from a better member's state with perturbed values) and its cost.
{_link("pbt_lineage")}

{findings.pbt_lines}
## Epochs to reach the target

{_link("epochs_to_target")}

{markdown_table(t["epochs_to_target"])}
## Quality frontier

Per arm, how many of its representing runs reconstruct on both VAEs (final val exact match >= {EXACT_TARGET:g}),
and over those the mean [95% t-interval] of {spec.selection.metric}, with the untied concordance and triplet r
of each VAE (r's ceiling is about 0.75, the untied concordance's 1.0). {_link("quality_frontier")}

{markdown_table(t["quality_frontier"])}
## Controller collapse

{_link("collapse")} · {_link("collapse_by_arm")}

{markdown_table(t["collapse_by_arm"])}
## Open questions

{_ablation(tables, findings)}
### Observational evidence: the search trials

TPE varied the other parameters together with each option and drew the options it liked more often: these
answers are associations, not effects. {_link("questions")} · {_link("question_groups")} · {_link("importances")}

{markdown_table(t["questions"][["question", "arm", "options", "importance", "answer"]])}
{notes}
## Plots

{plots}

## Data

[{TRIALS_FILE}]({TRIALS_FILE}) (one row per trial) · [{EPOCHS_FILE}]({EPOCHS_FILE}) (one row per trial-epoch)
"""


def write_report(tables: StudyTables, findings: Findings) -> Path:
    """Write tables/*.csv and report.md; return the report's path."""
    write_tables(tables.study_dir, findings)
    path = tables.study_dir / REPORT_FILE
    atomic_write_text(path, render(tables, findings))
    return path
