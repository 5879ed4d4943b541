"""What makes a reference strong, as the spec decides it: every Optuna arm's search starts at the arm's own
defaults, and the fixed-λ front sweeps the reference's trade-off weights.

**Defaults first.** The first trial of every replicate of an Optuna arm (slot 0) is the arm's config with every
searched key at the value the config gives it (``default_params``): a search whose pick is worse than the
defaults it never tried is a weak baseline (Xin et al., "Do Current Multi-Task Optimization Methods in Deep
Learning Even Help?", NeurIPS 2022). No rung stops it. A default outside its key's searched range is refused at
load: the box must contain the defaults. ``defaults_first: false`` in the spec draws every trial instead.

**The front** (``front`` in the spec, ``study.phases.front``): every point of a grid of constant settings of one
arm, run to the last epoch on each of the front's seeds (Kurin et al., "In Defense of the Unitary Scalarization
for Deep Multi-Task Learning", NeurIPS 2022). The seeds include the arm's search seed: on it the grid points are
candidates of the arm's pick beside its search trials, ranked by the one ranking rule; the other seeds measure
each point's spread. A point is named ``g<index>-s<seed>`` (``g07-s0``), its index in the grid's product order
(the first key slowest).

Example::

    front_points(spec)        # [{'arm.w_rank': 0.1, 'arm.w_kl': 0.01}, {'arm.w_rank': 0.1, 'arm.w_kl': 0.1}, ...]
    default_params(spec, "fixed")   # {'arm.w_kl': 1.0, 'arm.rho': 0.1, ...}
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from diffctl.config import ConfigError, config_from_dict

from .configs import trial_config
from .errors import SpecError
from .schema import CategoricalDistribution, Distribution, FloatDistribution, StudySpec
from .space import is_active, sampling_order

DEFAULTS = "defaults"  # the ``sampling`` of a search trial that runs the arm's defaults


def front_points(spec: StudySpec) -> list[dict[str, Any]]:
    """The grid's points in product order (the first key varies slowest); [] without a front."""
    if spec.front is None:
        return []
    keys = list(spec.front.grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(spec.front.grid[k] for k in keys))]


def front_name(point: int, seed: int) -> str:
    return f"g{point:02d}-s{seed}"


def point_of(name: str) -> int:
    """The grid index of a front run's name (``g07-s0`` -> 7)."""
    return int(name[1:name.index("-")])


def search_seed(spec: StudySpec, arm: str) -> int:
    """The seed an arm's search trials train with (its config's, diffctl's default 0)."""
    return config_from_dict(trial_config(spec, arm, {})).seed


def front_arm(spec: StudySpec) -> str | None:
    return spec.front.arm if spec.front is not None else None


def _flat(data: dict[str, Any], key: str, where: str) -> Any:
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise SpecError(f"{where}: the arm's config gives {key} no value to start the search at")
        node = node[part]
    return node


def default_params(spec: StudySpec, arm: str) -> dict[str, Any]:
    """The arm's searched keys at the values its resolved config gives them (a conditional key only where its
    condition holds), in sampling order: the first trial of each replicate of its search."""
    space = spec.arms[arm].space
    resolved = config_from_dict(trial_config(spec, arm, {})).model_dump(mode="json")
    params: dict[str, Any] = {}
    for key in sampling_order(space):
        if is_active(space[key], params):
            params[key] = _flat(resolved, key, f"arms.{arm}.space.{key}")
    return params


def _in_range(value: Any, dist: Distribution) -> bool:
    if isinstance(dist, CategoricalDistribution):
        return value in dist.choices
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if not dist.low <= value <= dist.high:
        return False
    step = dist.step
    if isinstance(dist, FloatDistribution) and step is None:
        return True
    return math.isclose((value - dist.low) / step, round((value - dist.low) / step), abs_tol=1e-9)


def check_defaults(spec: StudySpec) -> None:
    """Every Optuna arm's defaults lie in its searched ranges (its first trial runs them)."""
    if not spec.defaults_first:
        return
    for label, arm in spec.arms.items():
        if not arm.space:  # nothing searched (a PBT arm draws its mutations itself)
            continue
        try:
            params = default_params(spec, label)
        except ConfigError:
            continue  # an invalid config is named by the arm's own checks
        for key, value in params.items():
            if not _in_range(value, arm.space[key]):
                raise SpecError(f"arms.{label}.space.{key}: the arm's default {value!r} lies outside the searched "
                                "range (each search starts at its arm's defaults); widen the range or set the "
                                f"default in arms.{label}.config")


def check_front(spec: StudySpec) -> None:
    """The front's arm exists, every grid point is a valid config of it, and its seeds include the arm's search
    seed and no confirmation seed (that its search picks constants is the front phase's check,
    ``study.phases.front``)."""
    front = spec.front
    if front is None:
        return
    if front.arm not in spec.arms:
        raise SpecError(f"front.arm: no arm {front.arm!r} in arms ({', '.join(spec.arms)})")
    if len(set(front.seeds)) != len(front.seeds):
        raise SpecError(f"front.seeds: repeated seed in {front.seeds}")
    for key, values in front.grid.items():
        if len(values) != len({repr(v) for v in values}):
            raise SpecError(f"front.grid.{key}: repeated value in {values}")
    for point in front_points(spec):
        try:
            config_from_dict(trial_config(spec, front.arm, point))
        except ConfigError as exc:
            shown = ", ".join(f"{k}={v!r}" for k, v in point.items())
            raise SpecError(f"front.grid: {exc} (with {shown})") from None
    seed = search_seed(spec, front.arm)
    if seed not in front.seeds:
        raise SpecError(f"front.seeds: must include {seed}, the search seed of arm {front.arm} (on it the grid "
                        "points compete with the search trials for the arm's pick)")
    reused = sorted(set(front.seeds) & set(spec.confirm.seeds))
    if reused:
        raise SpecError(f"front.seeds: {reused[0]} is a confirmation seed; the front needs seeds of its own")
