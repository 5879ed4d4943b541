"""Open questions: the causal answers of the ablation around a confirmed configuration (``tables/ablation.csv``,
``tables/ablation_answers.csv``, ``analysis.ablation``), then the observational evidence of the search trials
that varied each option (``tables/questions.csv``, ``tables/question_groups.csv``, ``tables/importances.csv``,
``analysis.questions``)."""

from __future__ import annotations

import pandas as pd

from .. import ablation, questions
from ..load import StudyTables
from .base import Computed, Section
from .text import links, markdown_table


def _ablation(study: StudyTables, computed: Computed) -> str:
    """The causal answers first: the ablation around a confirmed configuration, one line per question."""
    lines = ablation.answer_lines(study, ablation.ablation_plan(study), computed["ablation_answers"])
    if not lines:
        return "No ablation in this study (a spec's `ablate` section asks for one: the causal answers).\n"
    return ("Ablation: one option at a time changed from the confirmed configuration, everything else equal, each "
            "run paired with the centre's run on its seed; Holm-corrected over every option of every question (one "
            f"family per budget and metric); inside the margin: equivalent. {links('ablation_answers', 'ablation')} "
            "(every budget and objective)\n\n" + "\n".join(lines) + "\n")


class OpenQuestions(Section):
    def compute(self, study: StudyTables, computed: Computed) -> dict[str, pd.DataFrame]:
        plan = ablation.ablation_plan(study)
        ablated = ablation.paired_vs_centre(study, plan)
        importances, notes = questions.param_importances(study)
        return {"ablation": ablated, "ablation_answers": ablation.answers(study, plan, ablated),
                "questions": questions.answers(study, importances),
                "question_groups": questions.grouped_table(study, computed["collapse"]), "importances": importances,
                "importance_notes": pd.DataFrame({"arm": list(notes), "note": list(notes.values())},
                                                 columns=["arm", "note"])}

    def render(self, study: StudyTables, computed: Computed) -> str:
        shown = computed["questions"][["question", "arm", "options", "importance", "answer"]]
        notes = "".join(f"- importances ({r.arm}): {r.note}\n" for r in computed["importance_notes"].itertuples())
        return f"""\
{_ablation(study, computed)}
### Observational evidence: the search trials

TPE varied the other parameters together with each option and drew the options it liked more often: these
answers are associations, not effects. {links("questions", "question_groups", "importances")}

{markdown_table(shown)}
{notes}"""


SECTION = OpenQuestions("questions", "Open questions",
                        tables=("ablation", "ablation_answers", "questions", "question_groups", "importances"),
                        kept=("importance_notes",))  # per arm (or `*`), why it has no importances
