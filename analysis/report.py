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

from .collapse import AT_FLOOR, COLLAPSED_WEIGHTS
from .compare import ALPHA, NO_DIFFERENCE
from .load import EPOCHS_FILE, TRIALS_FILE, StudyTables
from .questions import MIN_GROUP

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
    """Per arm and phase: trials, each status, wall hours and CPU-hours (wall time x CPUs per trial)."""
    trials = tables.trials
    counts = pd.crosstab([trials["arm"], trials["phase"]], trials["status"])
    wall = trials.groupby(["arm", "phase"])["wall_time_s"].sum() / 3600
    table = counts.assign(trials=counts.sum(axis=1), wall_hours=wall,
                          cpu_hours=wall * tables.spec.cpus_per_trial)
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
    lines = [f"- {findings.winner_sentence}"]
    paired = findings.tables.get("paired_vs_fixed", pd.DataFrame())
    selection = tables.spec.selection
    for row in paired[paired["metric"] == selection.metric].itertuples() if not paired.empty else []:
        if row.n_pairs == 0:
            lines.append(f"- `{row.arm}` against `{row.reference}`: {row.verdict}.")
            continue
        lines.append(f"- `{row.arm}` − `{row.reference}` on {row.metric}: {_cell(row.mean_diff)} "
                     f"(95% CI {_cell(row.ci_low)} to {_cell(row.ci_high)}, p = {_cell(row.p_value)}, "
                     f"n = {row.n_pairs}): {row.verdict}.")
    collapse = findings.tables.get("collapse", pd.DataFrame())
    if not collapse.empty:
        lines.append(f"- Collapse: {int(collapse['collapsed'].sum())} of {len(collapse)} controller trials "
                     f"collapsed (>= {COLLAPSED_WEIGHTS} of 4 weights at their floor in >= {AT_FLOOR:.0%} of "
                     f"the last epoch's steps).")
    for row in findings.tables.get("questions", pd.DataFrame()).itertuples():
        if row.arm is not None and isinstance(row.arm, str):
            lines.append(f"- {row.question} (`{row.key}`, arm `{row.arm}`): {row.answer}.")
    return "\n".join(lines) + "\n"


def render(tables: StudyTables, findings: Findings) -> str:
    """The text of report.md."""
    spec, t = tables.spec, findings.tables
    cost = t["cost"]
    objectives = ", ".join(f"{o.metric} ({o.mode})" for o in spec.objectives)
    constraints = "; ".join(c.text for c in spec.constraints) or "none"
    plots = "\n\n".join(f"![{name}]({p.relative_to(tables.study_dir).as_posix()})"
                        for name, p in findings.plots.items())
    notes = "".join(f"- {k}: {v}\n" for k, v in findings.notes.items())
    search_cols = [c for c in t["search"].columns if c not in ("params", "reason")]
    return f"""# Study `{spec.name}`

Directory `{tables.study_dir}` · analysed {time.strftime("%Y-%m-%d %H:%M:%S %z")} ·
objectives {objectives} · constraints {constraints} · selection {spec.selection.metric} ({spec.selection.mode}) ·
confirmation seeds {spec.confirm_seeds} · fixed-λ reference arm `{tables.fixed_arm()}`.

## Conclusions

{_conclusions(tables, findings)}
Differences are paired by confirmation seed: paired t-test (`scipy.stats.ttest_rel`) and 95% t-interval of the
differences; "{NO_DIFFERENCE}" when p >= {ALPHA:g}. Open questions: Kruskal-Wallis across options with
>= {MIN_GROUP} finished search trials each (observational: TPE varied the other parameters too). Weighted
training losses are never compared across arms.

## Cost

{len(tables.trials)} trials, {cost['wall_hours'].sum():.3g} wall-hours of trial time,
{cost['cpu_hours'].sum():.3g} CPU-hours ({spec.cpus_per_trial} CPU per trial). {_link("cost")}

{markdown_table(cost)}
{_flagged(tables)}
## Search: Pareto fronts and the selected configuration

`pareto`: on the front of the arm's finished trials over the objectives; `pareto_feasible`: on the front of its
feasible trials; `selected`: the selection rule's pick. {_link("search")}

{markdown_table(t["search"][search_cols])}
## Confirmation seeds (winner configuration of each arm)

Mean [95% t-interval] (n seeds) of the final epoch. {_link("confirm_summary")}

{markdown_table(confirm_overview(t["confirm_summary"]))}
## Against the fixed-λ arm, paired by seed

{_link("paired_vs_fixed")}

{markdown_table(t["paired_vs_fixed"])}
## Epochs to reach the target

{_link("epochs_to_target")}

{markdown_table(t["epochs_to_target"])}
## Controller collapse

{_link("collapse")} · {_link("collapse_by_arm")}

{markdown_table(t["collapse_by_arm"])}
## Open questions

{_link("questions")} · {_link("question_groups")} · {_link("importances")}

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
