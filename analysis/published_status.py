"""``diffctl study status`` of a published study (``results/<name>/``: its tables, no trial directories): per phase
and arm, its trials by status, and the winner sentence.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from study.state import is_published
from study.trialdir import DIVERGED, ERROR, OK, STOPPED

from .compare import paired_vs_fixed, winner
from .load import build_tables


def published_status_lines(study_dir: Path) -> list[str] | None:
    """``diffctl study status`` of a published study: per phase and arm, its trials by status, from its tables
    (None when ``study_dir`` is not a published study)."""
    if not is_published(study_dir):
        return None
    tables = build_tables(study_dir)
    trials = tables.trials
    lines = [f"published study {tables.spec.name} at {study_dir} (its tables: trials.parquet, epochs.parquet; no "
             "trial directories, nothing to resume)"]
    counts = pd.crosstab([trials["phase"], trials["arm"]], trials["status"])
    ended = (OK, STOPPED, DIVERGED, ERROR)
    statuses = [s for s in ended if s in counts] + [s for s in counts.columns if s not in ended]
    width = max(20, *(len(arm) for _, arm in counts.index))
    lines.append(f"{'phase':8} {'arm':{width}} " + " ".join(f"{s:>8}" for s in statuses) + f" {'total':>6}")
    for (phase, arm), row in counts.iterrows():
        lines.append(f"{phase:8} {arm:{width}} " + " ".join(f"{row[s]:>8}" for s in statuses)
                     + f" {int(row.sum()):>6}")
    name, sentence = winner(tables, paired_vs_fixed(tables))
    lines.append(sentence)
    return lines
