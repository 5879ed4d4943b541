"""An arm's search space as data: the order its keys are sampled in, which conditional keys a trial samples, and
the values that bound each distribution (what the spec checks try against diffctl).

Example::

    sampling_order(spec.arms["barrier"].space)   # ['arm.warmup', 'arm.warmup_epochs', ...]
"""

from __future__ import annotations

from typing import Any

from .errors import SpecError
from .schema import CategoricalDistribution, Distribution, _Distribution


def sampling_order(space: dict[str, Distribution]) -> list[str]:
    """The keys of a space in spec order, except that a key comes after the keys its ``when`` reads (so the
    spec's key order does not matter, e.g. after a tool sorted it)."""
    order: list[str] = []
    pending = list(space)
    while pending:
        ready = [key for key in pending if all(cond in order for cond in space[key].when or {})]
        if not ready:
            raise SpecError(f"space: the 'when' conditions of {', '.join(pending)} form a cycle or read missing keys")
        order += ready
        pending = [key for key in pending if key not in ready]
    return order


def is_active(distribution: _Distribution, params: dict[str, Any]) -> bool:
    """Whether a conditional key is sampled, given the params sampled before it."""
    return all(params.get(key) in allowed for key, allowed in (distribution.when or {}).items())


def distribution_values(distribution: Distribution) -> list[Any]:
    """The values that bound a distribution: low and high, or every choice."""
    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    return [distribution.low, distribution.high]
