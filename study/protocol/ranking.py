"""How a study ranks trials: objective values, feasibility under the spec's constraints, the selection rule that
picks the configurations to confirm, and the rank of a record in a population. One module, so that the search,
the population, the confirmation and the analysis rank alike.

A diverged trial has no measured objective. It still ends normally: Optuna is told the finite stand-in
``WORST`` in the objective's bad direction, and the trial is marked infeasible (constraint ``status_ok`` = 1),
so TPE ranks it below every feasible trial and ``study.best_trial`` never returns it. Ray reports carry these
told values under ``objective_<metric>``; the record's own fields stay as diffctl wrote them.

Example::

    is_feasible(spec, {"status": "ok", "val_exact_match_A": 0.95})   # with constraints ["val_exact_match_A >= 0.9"]
    ranking_score(spec, record)                                       # selection value, or below every feasible one
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

from diffctl.train import STATUS_OK

from .constraints import WORST, is_finite_number
from .schema import Objective, StudySpec

STATUS_CONSTRAINT = "status_ok"  # 0 when the final record is ok, 1 when it diverged
FEASIBLE_KEY = "feasible"
INFEASIBLE_RANK = -1e6  # below any selection value a trial can report: every infeasible record ranks lower


class TrialLike(Protocol):
    """A trial as read back from its directory (``study.trialdir.TrialSummary``): its info and last record."""

    info: Any
    last: dict[str, Any]

    @property
    def status(self) -> str: ...


def objective_key(metric: str) -> str:
    """The key under which a trial reports the value told to Optuna for ``metric``."""
    return f"objective_{metric}"


def told_value(objective: Objective, record: dict[str, Any]) -> float:
    """The objective value Optuna is told: the record's value, or ``WORST`` in the bad direction."""
    value = record.get(objective.metric)
    if record.get("status") == STATUS_OK and is_finite_number(value):
        return float(value)
    return WORST if objective.mode == "min" else -WORST


def constraint_values(spec: StudySpec, record: dict[str, Any]) -> dict[str, float]:
    """Every constraint's violation (<= 0 satisfied), keyed by its text, plus ``status_ok``."""
    values = {STATUS_CONSTRAINT: 0.0 if record.get("status") == STATUS_OK else 1.0}
    for constraint in spec.parsed_constraints():
        values[constraint.text] = constraint.violation(record)
    return values


def is_feasible(spec: StudySpec, record: dict[str, Any]) -> bool:
    return all(v <= 0 for v in constraint_values(spec, record).values())


def tune_metrics(spec: StudySpec, record: dict[str, Any]) -> dict[str, Any]:
    """What a trial reports to Ray besides its record: the told objective values and its feasibility."""
    out: dict[str, Any] = {objective_key(o.metric): told_value(o, record) for o in spec.objectives}
    out[FEASIBLE_KEY] = is_feasible(spec, record)
    return out


def selection_value(spec: StudySpec, record: dict[str, Any]) -> float:
    """The selection metric of a record, oriented so that larger is better."""
    value = told_value(spec.selection, record)
    return value if spec.selection.mode == "max" else -value


def ranking_score(spec: StudySpec, record: dict[str, Any]) -> float:
    """A record's rank in a population (larger is better): its selection value when it meets the constraints;
    otherwise below every feasible record, ordered by how far it misses them (the sum of the violations). A
    member that gave up a constraint for a better selection metric (reconstruction for ranking, say) is never
    preferred to one that kept it."""
    if is_feasible(spec, record):
        return selection_value(spec, record)
    return INFEASIBLE_RANK - sum(max(v, 0.0) for v in constraint_values(spec, record).values())


def rung_score(spec: StudySpec, record: dict[str, Any]) -> float:
    """A search trial's score at an early-stopping rung (larger is better): the selection metric alone, at every
    rung. A rung must not judge a trial on a constraint it cannot meet yet, and no rung epoch is known to be late
    enough for every design. Measured on the full study (open-questions.yaml, 2026-12-05): with the ranking rule at
    the last rung (epoch 15 of 20), six of the fixed arm's 19 stopped trials ranked 0.81-0.98 untied against its
    finished trials' 0.64-0.96 and were stopped because a VAE had not reconstructed yet (val exact match of the lower
    VAE 0.01-0.85 at epoch 15); under this rule four of them ran to epoch 20 and none reconstructed there either
    (0.01-0.84), so the fixed arm's picks did not change and the rule cost it 275 instead of 255 search
    trial-epochs. The constraints judge the finished trial: what Optuna is told, each arm's pick, the verdicts."""
    return selection_value(spec, record)


def confirmation_sources(spec: StudySpec, trials: list[TrialLike],
                         top_k: int | None = None) -> list[tuple[TrialLike, bool]]:
    """The ``top_k`` (default: the spec's ``confirm.top_k``) trials of an arm that ran every epoch, ranked by
    :func:`ranking_score`: feasible trials by the selection metric first; when none is feasible, the trials
    nearest the constraints (the order PBT and the pruning audit use too), each flagged ``False``. Ties keep the
    order of ``trials``."""
    full = [t for t in trials if t.status == STATUS_OK and t.info.epochs_done == spec.epochs]
    ranked = sorted(full, key=lambda t: -ranking_score(spec, t.last))  # stable
    return [(t, is_feasible(spec, t.last)) for t in ranked[: top_k or spec.confirm.top_k]]


def best_trial(spec: StudySpec, trials: list[TrialLike]) -> TrialLike | None:
    """The best feasible finished trial by the spec's selection rule, or None."""
    feasible = [t for t in trials if t.status == STATUS_OK and is_feasible(spec, t.last)]
    return max(feasible, key=lambda t: selection_value(spec, t.last), default=None)


@dataclass(frozen=True)
class ConfirmedRun:
    """One confirmation run as the ranking of confirmed configurations sees it."""

    source: str  # the search trial whose configuration it repeats
    seed: int
    finished: bool  # status ok and every epoch run
    feasible: bool
    value: float  # the selection metric (NaN when not finished)


def rank_sources(runs: list[ConfirmedRun], seeds: list[int], mode: str) -> list[dict[str, Any]]:
    """The confirmed configurations of one arm, best first: the most spec seeds feasible, then the fewest failed
    (diverged, errored or missing), then the best mean selection metric over its finished runs, then the source
    id. Each entry: ``source``, ``feasible`` and ``failed`` (seed counts), ``mean``. The study (the centre of an
    ablation) and the analysis (the arm's representing runs) rank with this one rule."""
    ranked = []
    for source in sorted({r.source for r in runs}):
        mine = [r for r in runs if r.source == source and r.seed in seeds]
        done = [r for r in mine if r.finished]
        values = [r.value for r in done if not math.isnan(r.value)]
        ranked.append({"source": source, "feasible": len({r.seed for r in mine if r.feasible}),
                       "failed": len(seeds) - len({r.seed for r in done}),
                       "mean": math.fsum(values) / len(values) if values else math.nan})
    sign = -1.0 if mode == "max" else 1.0
    return sorted(ranked, key=lambda e: (-e["feasible"], e["failed"], math.isnan(e["mean"]),
                                         0.0 if math.isnan(e["mean"]) else sign * e["mean"], e["source"]))
