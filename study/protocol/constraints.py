"""A spec's feasibility constraints (``"val_exact_match_A >= 0.9"``) on a trial's final record.

Example::

    c = parse_constraint("val_exact_match_A >= 0.9", "constraints[0]")
    c.violation({"val_exact_match_A": 0.95})   # -0.05 (<= 0: satisfied)
    c.holds(0.95)                              # True
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from .errors import SpecError

WORST = 1e9  # a violation (and a told objective) for a record without a measured value
_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|>|<)\s*(\S+)\s*$")


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_finite_number(value: Any) -> bool:
    return is_number(value) and math.isfinite(value)


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

    def holds(self, value: Any) -> bool:
        """Whether ``value`` of the constraint's metric satisfies it; a missing or NaN value never does."""
        return self.violation({self.metric: value}) <= 0


def parse_constraint(text: str, where: str) -> Constraint:
    match = _CONSTRAINT.match(text)
    if not match:
        raise SpecError(f"{where}: {text!r} is not 'metric >= number' (ops: >=, <=, >, <)")
    metric, op, number = match.groups()
    try:
        threshold = float(number)
    except ValueError:
        raise SpecError(f"{where}: threshold {number!r} is not a number") from None
    if not math.isfinite(threshold):
        raise SpecError(f"{where}: threshold {number!r} is not finite")
    return Constraint(metric, op, threshold, text.strip())
