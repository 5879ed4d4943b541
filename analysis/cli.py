"""``diffctl analyze STUDY_DIR``: tables, comparisons, plots and report.md of a study directory."""

from __future__ import annotations

from pathlib import Path

from . import ablation, audit, collapse, compare, conclusions, fairness, front, pbt, quality, questions, trajectory, tuning
from .load import build_tables, save_tables
from .plots import make_plots
from .plots_compare import expected_best_plot, tradeoff_plot
from .report import Findings, cost_table, write_report
from . import utilisation


def analyze(study_dir: str | Path) -> Path:
    """Run the whole analysis of ``study_dir`` and return the path of its report.md."""
    tables = build_tables(study_dir)
    plan = ablation.ablation_plan(tables)  # a damaged ablate.json is refused before anything is written
    save_tables(tables)
    collapsed = collapse.collapse_table(tables)
    importances, notes = questions.param_importances(tables)
    paired = compare.paired_vs_fixed(tables)
    winner, sentence = compare.winner(tables, paired)
    box = trajectory.box_check(tables)
    if winner is not None and (outside := trajectory.outside_box(tables, box, winner)):
        sentence += " Not a fair comparison: its weights left the reference box (" + "; ".join(outside) + ")."
    distilled = trajectory.paired_vs_distilled(tables)
    levels = trajectory.levels(tables, distilled)
    summary = compare.confirm_summary(tables)
    ablated = ablation.paired_vs_centre(tables, plan)
    ablation_answers = ablation.answers(tables, plan, ablated)
    ablation_lines = ablation.answer_lines(tables, plan, ablation_answers)
    lineage = pbt.lineage_table(tables)
    audited = audit.pruning_audit(tables)
    expected = tuning.expected_best(tables)
    compute, freedom = fairness.compute_table(tables), fairness.freedom_table(tables)
    audit_summary = audit.audit_summary(audited)
    front_table = front.front_table(tables)
    margins = front.front_margins(tables, front_table)
    findings = Findings(
        tables={
            "cost": cost_table(tables),
            "concurrency": utilisation.concurrency_table(tables),
            "search": compare.search_table(tables),
            "confirm_summary": summary,
            "paired_vs_fixed": paired,
            "epochs_to_target": quality.epochs_to_target(tables),
            "quality_frontier": quality.quality_frontier(tables),
            "box_check": box,
            "paired_vs_distilled": distilled,
            "trajectory": levels,
            "collapse": collapsed,
            "collapse_by_arm": collapse.collapse_by_arm(collapsed),
            "questions": questions.answers(tables, importances),
            "question_groups": questions.grouped_table(tables, collapsed),
            "importances": importances,
            "ablation": ablated,
            "ablation_answers": ablation_answers,
            "pbt_lineage": lineage,
            "pruning_audit": audited,
            "audit_summary": audit_summary,
            "conclusions": conclusions.conclusions_table(tables, paired, box, compute, freedom, audit_summary)
            .merge(margins, on="arm", how="left"),
            "front": front_table,
            "expected_best": expected,
            "replicate_spread": tuning.replicate_spread(tables),
            "compute": compute,
            "freedom": freedom,
        },
        winner=winner,
        winner_sentence=sentence,
        notes={f"importances ({arm})": note for arm, note in notes.items()},
        extra_conclusions=front.front_lines(tables, front_table, margins) + compare.infeasible_pick_lines(tables)
        + trajectory.level_lines(tables, levels) + ablation_lines,
        ablation_lines=ablation_lines,
        pbt_lines=pbt.pbt_section(tables, lineage),
        audit_lines=audit.audit_lines(tables, audited),
        fairness_lines=fairness.fairness_lines(tables, compute, freedom),
    )
    findings.plots = make_plots(tables, summary)
    findings.plots["tradeoff"] = tradeoff_plot(tables, tables.study_dir / "plots" / "tradeoff.png", front_table)
    if not expected.empty:
        findings.plots["expected_best"] = expected_best_plot(tables, expected, tables.study_dir / "plots" / "expected_best.png")
    return write_report(tables, findings)


def analyze_command(study_dir: str) -> int:
    """CLI entry: analyse and print the report's path; a bad directory raises :class:`InputError`."""
    print(analyze(study_dir))
    return 0
