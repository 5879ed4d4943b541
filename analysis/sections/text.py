"""The Markdown that every report section writes with: tables, links to the CSV files under ``tables/``, and the
columns a paired comparison shows."""

from __future__ import annotations

import math

import pandas as pd

TABLES_DIR = "tables"

PAIRED_COLUMNS = ["arm", "reference", "budget", "epoch", "metric", "level", "n_pairs", "n_feasible_pairs", "mean_diff",
                  "ci_low", "ci_high", "p_holm", "p_equivalent_holm", "detectable", "p_better", "censored_arm",
                  "censored_reference", "verdict"]


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


def link(name: str) -> str:
    """A Markdown link to ``tables/<name>.csv`` (relative to report.md)."""
    return f"[{name}.csv]({TABLES_DIR}/{name}.csv)"


def links(*names: str) -> str:
    """Links to several tables, separated by a middle dot."""
    return " · ".join(link(name) for name in names)


def paired_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """The columns of a paired comparison (``analysis.compare.paired_table``) that the report shows."""
    return frame[[c for c in PAIRED_COLUMNS if c in frame]] if not frame.empty else frame
