"""The study spec as the analysis reads it: objectives, constraints, selection rule, confirmation seeds.

``spec.yaml`` is read with the study layer's own schema (``study.spec``) and its constraints are judged with
the study's own ``parse_constraint``, so a trial the analysis calls feasible is exactly one the study called
feasible. Neither module imports Ray.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diffctl.errors import InputError
from study.objectives import Constraint, parse_constraint
from study.spec import read_spec_file

SPEC_FILE = "spec.yaml"


@dataclass(frozen=True)
class Objective:
    """One record field and whether lower (``min``) or higher (``max``) is better."""

    metric: str
    mode: str

    def sign(self) -> float:
        """+1 for min, -1 for max: multiplying by it turns the objective into one to minimise."""
        return 1.0 if self.mode == "min" else -1.0


def holds(constraint: Constraint, value: Any) -> bool:
    """Whether ``value`` of the constraint's metric satisfies it; a missing or NaN value never does."""
    return constraint.violation({constraint.metric: value}) <= 0


@dataclass
class StudySpec:
    """The parts of a resolved study spec that the analysis uses."""

    name: str
    epochs: int
    objectives: list[Objective]
    constraints: list[Constraint]
    selection: Objective
    cpus_per_trial: int
    confirm_seeds: list[int]
    arms: dict[str, dict[str, Any]] = field(default_factory=dict)
    budgets: list[tuple[float, int]] = field(default_factory=list)  # (fraction, epoch) of the anytime comparison
    equivalence: dict[str, float] = field(default_factory=dict)  # metric -> equivalence margin
    ablate_arm: str | None = None  # the arm whose confirmed configuration is the ablation's centre (None: none)

    def named_metrics(self) -> list[tuple[str, str]]:
        """(spec key, metric) of every record field the spec names: objectives, selection, constraints."""
        named = [(f"objectives[{i}].metric", o.metric) for i, o in enumerate(self.objectives)]
        named.append(("selection.metric", self.selection.metric))
        return named + [(f"constraints[{i}]", c.metric) for i, c in enumerate(self.constraints)]

    def tracked_objectives(self) -> list[Objective]:
        """The objectives followed by the selection metric when it is not one of them."""
        extra = [] if any(o.metric == self.selection.metric for o in self.objectives) else [self.selection]
        return [*self.objectives, *extra]


def read_spec(study_dir: str | Path) -> StudySpec:
    """Read ``<study_dir>/spec.yaml``; a missing or malformed spec raises :class:`InputError` naming it."""
    path = Path(study_dir) / SPEC_FILE
    if not path.is_file():
        raise InputError(f"{study_dir}: not a study directory (no {SPEC_FILE})")
    spec = read_spec_file(path)
    objectives = [Objective(o.metric, o.mode) for o in spec.objectives]
    selection = spec.selection or spec.objectives[0]
    return StudySpec(
        name=spec.name or Path(study_dir).name,
        epochs=spec.epochs,
        objectives=objectives,
        constraints=[parse_constraint(text, f"{path}: constraints[{i}]") for i, text in enumerate(spec.constraints)],
        selection=Objective(selection.metric, selection.mode),
        cpus_per_trial=spec.cpus_per_trial,
        confirm_seeds=list(spec.confirm.seeds),
        arms={label: arm.model_dump(mode="python") for label, arm in spec.arms.items()},
        budgets=spec.confirm.budget_epochs(spec.epochs),
        equivalence=dict(spec.equivalence),
        ablate_arm=spec.ablate.arm if spec.ablate is not None else None,
    )
