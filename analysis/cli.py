"""``diffctl analyze STUDY_DIR``: tables, comparisons, plots and report.md of a study directory (every section of
``analysis.sections``, in report order)."""

from __future__ import annotations

from pathlib import Path

from . import report
from .ablation import ablation_plan
from .load import build_tables, save_tables


def analyze(study_dir: str | Path) -> Path:
    """Run the whole analysis of ``study_dir`` and return the path of its report.md."""
    tables = build_tables(study_dir)
    ablation_plan(tables)  # a damaged ablate.json is refused before anything is written
    save_tables(tables)
    return report.write_report(tables, report.compute(tables))


def analyze_command(study_dir: str) -> int:
    """CLI entry: analyse and print the report's path; a bad directory raises :class:`InputError`."""
    print(analyze(study_dir))
    return 0
