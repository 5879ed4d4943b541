"""``diffctl analyze STUDY_DIR``: tables, comparisons, plots and report.md of a study directory."""

from __future__ import annotations

from pathlib import Path

from . import collapse, compare, questions
from .load import load
from .plots import make_plots
from .report import Findings, cost_table, write_report


def analyze(study_dir: str | Path) -> Path:
    """Run the whole analysis of ``study_dir`` and return the path of its report.md."""
    tables = load(study_dir)
    collapsed = collapse.collapse_table(tables)
    importances, notes = questions.param_importances(tables)
    paired = compare.paired_vs_fixed(tables)
    winner, sentence = compare.winner(tables, paired)
    summary = compare.confirm_summary(tables)
    findings = Findings(
        tables={
            "cost": cost_table(tables),
            "search": compare.search_table(tables),
            "confirm_summary": summary,
            "paired_vs_fixed": paired,
            "epochs_to_target": compare.epochs_to_target(tables),
            "collapse": collapsed,
            "collapse_by_arm": collapse.collapse_by_arm(collapsed),
            "questions": questions.answers(tables, importances),
            "question_groups": questions.grouped_table(tables, collapsed),
            "importances": importances,
        },
        winner=winner,
        winner_sentence=sentence,
        notes={f"importances ({arm})": note for arm, note in notes.items()},
    )
    findings.plots = make_plots(tables, summary)
    return write_report(tables, findings)


def analyze_command(study_dir: str) -> int:
    """CLI entry: analyse and print the report's path; a bad directory raises :class:`InputError`."""
    print(analyze(study_dir))
    return 0
