"""How a study judges a trial from its final epoch record: objective values, feasibility constraints
(``"val_exact_match_A >= 0.9"``), the selection rule that picks the configurations to confirm, and the list of
record fields a metric may name (read off a real one-step epoch of diffctl's trainer, never a hand-kept list).

A diverged trial has no measured objective. It still ends normally: Optuna is told the finite stand-in
``WORST`` in the objective's bad direction, and the trial is marked infeasible (constraint ``status_ok`` = 1),
so TPE ranks it below every feasible trial and ``study.best_trial`` never returns it. Ray reports carry these
told values under ``objective_<metric>``; the record's own fields stay as diffctl wrote them.

Example::

    c = parse_constraint("val_exact_match_A >= 0.9", "constraints[0]")
    c.violation({"val_exact_match_A": 0.95})   # -0.05 (<= 0: satisfied)
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from diffctl.config import Config, config_from_dict
from diffctl.data import make_split
from diffctl.errors import InputError
from diffctl.train import STATUS_OK, Trainer

if TYPE_CHECKING:
    from .spec import Objective, StudySpec
    from .trialdir import TrialSummary

WORST = 1e9  # the finite objective told for a trial without a measured value (diverged)
STATUS_CONSTRAINT = "status_ok"  # 0 when the final record is ok, 1 when it diverged
FEASIBLE_KEY = "feasible"

_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|>|<)\s*(\S+)\s*$")


@dataclass(frozen=True)
class Constraint:
    """``metric op threshold`` on the final record; :meth:`violation` <= 0 means satisfied (Optuna's sign)."""

    metric: str
    op: str
    threshold: float
    text: str

    def violation(self, record: dict[str, Any]) -> float:
        value = record.get(self.metric)
        if not is_finite_number(value):
            return WORST
        t = self.threshold
        # Strict inequalities shift the threshold by one float step so that "<= 0 is feasible" stays exact.
        if self.op == ">=":
            return t - value
        if self.op == ">":
            return math.nextafter(t, math.inf) - value
        if self.op == "<=":
            return value - t
        return value - math.nextafter(t, -math.inf)


def parse_constraint(text: str, where: str) -> Constraint:
    match = _CONSTRAINT.match(text)
    if not match:
        raise InputError(f"{where}: {text!r} is not 'metric >= number' (ops: >=, <=, >, <)")
    metric, op, number = match.groups()
    try:
        threshold = float(number)
    except ValueError:
        raise InputError(f"{where}: threshold {number!r} is not a number") from None
    if not math.isfinite(threshold):
        raise InputError(f"{where}: threshold {number!r} is not finite")
    return Constraint(metric, op, threshold, text.strip())


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_finite_number(value: Any) -> bool:
    return _is_number(value) and math.isfinite(value)


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
    for i, text in enumerate(spec.constraints):
        values[text] = parse_constraint(text, f"constraints[{i}]").violation(record)
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
    assert spec.selection is not None
    value = told_value(spec.selection, record)
    return value if spec.selection.mode == "max" else -value


INFEASIBLE_RANK = -1e6  # below any selection value a trial can report: every infeasible record ranks lower


def ranking_score(spec: StudySpec, record: dict[str, Any]) -> float:
    """A record's rank in a population (larger is better): its selection value when it meets the constraints;
    otherwise below every feasible record, ordered by how far it misses them (the sum of the violations). A
    member that gave up a constraint for a better selection metric (reconstruction for ranking, say) is never
    preferred to one that kept it."""
    if is_feasible(spec, record):
        return selection_value(spec, record)
    return INFEASIBLE_RANK - sum(max(v, 0.0) for v in constraint_values(spec, record).values())


def confirmation_sources(spec: StudySpec, trials: list[TrialSummary],
                         top_k: int | None = None) -> list[tuple[TrialSummary, bool]]:
    """The ``top_k`` (default: the spec's ``confirm.top_k``) search trials of an arm by the selection rule, among feasible trials that ran every epoch;
    when none is feasible, the best of those that ran every epoch (flagged ``False``)."""
    full = [t for t in trials if t.status == STATUS_OK and t.info.get("epochs_done") == spec.epochs]
    feasible = [t for t in full if is_feasible(spec, t.last)]
    pool = feasible or full
    ranked = sorted(pool, key=lambda t: -selection_value(spec, t.last))  # stable: ties keep trial-id order
    return [(t, bool(feasible)) for t in ranked[: top_k or spec.confirm.top_k]]


# --- the record fields a spec may name ---------------------------------------------------------------------------
@functools.lru_cache(maxsize=32)
def _probe(config_json: str) -> dict[str, Any]:
    return Trainer(config_from_dict(json.loads(config_json))).run_epoch()


def record_fields(config: Config, where: str) -> dict[str, Any]:
    """One real epoch record of ``config``'s arm, from a cheap probe: the whole training split in one batch,
    one epoch, tiny evaluation samples. Its keys are exactly the fields that arm's records carry."""
    data = config.to_dict()
    data["data"]["batch_size"] = len(make_split(config.data.split_seed).train)
    data["optim"]["epochs"] = 1
    data["eval"].update(prior_samples=16, triplet_indices=16, triplets=16, full_epochs=[])  # its epoch is full
    record = _probe(json.dumps(data, sort_keys=True))
    if record.get("status") != STATUS_OK:
        raise InputError(f"{where}: a one-step probe epoch diverged ({record.get('reason')}); cannot check metrics")
    return record


def check_metric(metric: str, fields: dict[str, Any], where: str, arm: str) -> None:
    if metric not in fields:
        known = ", ".join(sorted(k for k, v in fields.items() if _is_number(v)))
        raise InputError(f"{where}: unknown metric {metric!r} (records of arm {arm} have: {known})")
    if not _is_number(fields[metric]):
        raise InputError(f"{where}: {metric!r} is not a numeric record field")


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
