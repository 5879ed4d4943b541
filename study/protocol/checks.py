"""The checks of a study spec that need more than its schema: every config a trial can receive is validated by
``diffctl.config.config_from_dict`` (each bound and choice of each searched key, every PBT mutation, every
ablation override's key), and every metric named is looked up in a real epoch record of each arm kind. Every
error is one line naming the key.
"""

from __future__ import annotations

import re
from typing import Any, Iterator

import pydantic

from diffctl.arms import ARM_CLASSES
from diffctl.arms.controller import first_controlled_epoch
from diffctl.arms.piecewise import CONTROL_KEYS
from diffctl.config import Config, ConfigError, config_from_dict
from diffctl.config import format_validation_error as format_config_error
from diffctl.suggest import closest_key

from .configs import trial_config
from .errors import SpecError, validation_line
from .plan import ablate_label
from .reference import check_defaults, check_front
from .schema import (
    DERIVED_METRICS,
    OPTUNA,
    PBT,
    RETUNE_KEY,
    LABEL_PATTERN,
    RESERVED_KEYS,
    ArmSpec,
    CategoricalDistribution,
    Distribution,
    StudySpec,
    as_distribution,
)
from .space import distribution_values, is_active, sampling_order
from .trees import flat_keys

# What a PBT arm may mutate: what a piecewise schedule replays (its confirmation runs replay the best member's).
MUTABLE_KEYS = (*(f"arm.{key}" for key in CONTROL_KEYS), "optim.lr")
# Ablation axis and option labels: letters, digits, spaces, '_', '.', '-'; 1-64 characters, no space at either end.
ABLATE_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9 _.-]{0,62}[A-Za-z0-9_.-])?$")
# Keys an ablation option may not override, and what sets them.
ABLATE_FIXED_KEYS = {"seed": "ablate.seeds", "arm": "the ablated arm",
                     "arm.kind": "the ablated arm (an option keeps its kind)"}


def check_spec(spec: StudySpec) -> None:
    """Every check that needs more than the schema, short of training (the metrics a spec names are looked up in
    a real epoch record by ``study.probe``); raises :class:`SpecError` naming the key."""
    for key in flat_keys(spec.base):
        if key in RESERVED_KEYS:
            raise SpecError(f"base.{key}: set by {RESERVED_KEYS[key]}")
    try:  # the arm section is checked with each arm's own config, which may change its kind
        config_from_dict({k: v for k, v in spec.base.items() if k != "arm"})
    except ConfigError as exc:
        raise SpecError(f"base: {exc}") from None
    for label, arm in spec.arms.items():
        _check_arm(spec, label, arm)
    check_reference(spec)
    if len(set(spec.confirm.seeds)) != len(spec.confirm.seeds):
        raise SpecError(f"confirm.seeds: repeated seed in {spec.confirm.seeds}")
    if len({o.metric for o in spec.objectives}) != len(spec.objectives):
        raise SpecError("objectives: the same metric is listed twice")
    if spec.audit is not None and spec.asha is None:
        raise SpecError("audit: no early stopping to audit (an audit needs asha)")
    spec.named_metrics()  # parses every constraint: a malformed one is refused here
    check_ablate(spec)
    check_defaults(spec)
    check_front(spec)


def named_metrics(spec: StudySpec) -> list[tuple[str, str]]:
    """(spec key, metric) of every record field the spec names, equivalence margins included."""
    return spec.named_metrics() + [(f"equivalence.{m}", m) for m in spec.equivalence if m not in DERIVED_METRICS]


def _check_arm(spec: StudySpec, label: str, arm: ArmSpec) -> None:
    where = f"arms.{label}"
    if not re.match(LABEL_PATTERN, label):
        raise SpecError(f"{where}: an arm label uses letters, digits, '_', '.', '-' (at most 64 characters)")
    for key in flat_keys(arm.config):
        if key in RESERVED_KEYS:
            raise SpecError(f"{where}.config.{key}: set by {RESERVED_KEYS[key]}")
    searched, check = _SEARCHED[arm.search]
    space = check(spec, label, arm)
    _arm_kind(spec, label)
    for params in _sample_params(space):
        try:
            config = config_from_dict(trial_config(spec, label, params))
        except ConfigError as exc:
            shown = ", ".join(f"{k}={v!r}" for k, v in params.items())
            raise SpecError(f"{where}.{searched}: {exc} (with {shown})") from None
        if config.seed in spec.confirm.seeds:
            raise SpecError(
                f"confirm.seeds: {config.seed} is the search seed of arm {label}; confirmation needs fresh seeds"
            )
        warmup = first_controlled_epoch(config.arm) if config.arm.kind == "controller" else 0
        # a rung judges the trials of an arm's searched space (a PBT arm's members are ranked by PBT itself)
        if spec.asha is not None and arm.space and spec.asha.grace_period <= warmup:
            shown = ", ".join(f"{k}={v!r}" for k, v in params.items()) or "its config"
            raise SpecError(f"asha.grace_period: {spec.asha.grace_period} is not longer than the {warmup}-epoch "
                            f"warm-up arm {label} can have (with {shown}): a rung would judge a trial before it "
                            "acts; raise the grace period or shorten the warm-up")


def _arm_kind(spec: StudySpec, label: str) -> str:
    """The arm kind of the arm's config without sampled keys; an invalid config is an error naming the arm."""
    try:
        return config_from_dict(trial_config(spec, label, {})).arm.kind
    except ConfigError as exc:
        raise SpecError(f"arms.{label}.config: {exc}") from None


def _check_space(spec: StudySpec, label: str, arm: ArmSpec) -> dict[str, Distribution]:
    """An Optuna arm's space: not empty, every distribution sound, conditions without cycles."""
    where = f"arms.{label}"
    if arm.pbt is not None:
        raise SpecError(f"{where}.pbt: only with search: pbt (this arm's search is {arm.search})")
    if not arm.space:
        raise SpecError(f"{where}.space: empty (an arm needs at least one searched key; its budget buys nothing)")
    for key, dist in arm.space.items():
        _check_distribution(f"{where}.space.{key}", key, dist, arm.space)
    try:
        sampling_order(arm.space)
    except SpecError as exc:
        raise SpecError(f"{where}.{exc}") from None
    return arm.space


def _check_pbt(spec: StudySpec, label: str, arm: ArmSpec) -> dict[str, Distribution]:
    """A PBT arm: a population of fixed-arm members whose mutated keys a piecewise schedule can replay; returns
    its mutation ranges as distributions (each bound is then checked against diffctl like a space's)."""
    where = f"arms.{label}"
    if arm.space:
        raise SpecError(f"{where}.space: not used with search: pbt (its ranges are {where}.pbt.mutations)")
    if arm.pbt is None:
        raise SpecError(f"{where}.pbt: missing (search: pbt needs its perturbation_interval and mutations)")
    if arm.startup_trials is not None:
        raise SpecError(f"{where}.startup_trials: only with search: optuna (TPE's start-up trials)")
    if arm.budget < 2:
        raise SpecError(f"{where}.budget: a population needs at least 2 members (got {arm.budget})")
    if (kind := _arm_kind(spec, label)) != "fixed":
        raise SpecError(f"{where}.config.arm.kind: a PBT arm's members train kind fixed (got {kind}): PBT itself "
                        "moves their weights")
    if arm.pbt.perturbation_interval >= spec.epochs:
        raise SpecError(f"{where}.pbt.perturbation_interval: {arm.pbt.perturbation_interval} must be below epochs "
                        f"({spec.epochs}), or no member is ever perturbed")
    space = {}
    for key, mutation in arm.pbt.mutations.items():
        if key not in MUTABLE_KEYS:
            raise SpecError(f"{where}.pbt.mutations.{key}: not mutable (PBT mutates what a piecewise schedule "
                            f"replays: {', '.join(MUTABLE_KEYS)})")
        space[key] = as_distribution(mutation)
        _check_distribution(f"{where}.pbt.mutations.{key}", key, space[key], space)
    return space



# How each search method's ranges are checked, and the spec key that holds them (study.phases runs the searches).
_SEARCHED = {OPTUNA: ("space", _check_space), PBT: ("pbt.mutations", _check_pbt)}

def _check_distribution(where: str, key: str, dist: Distribution, space: dict[str, Distribution]) -> None:
    if key in RESERVED_KEYS or key == "seed":
        reason = RESERVED_KEYS.get(key, "confirm.seeds (a seed is not a hyperparameter)")
        raise SpecError(f"{where}: not searchable, set by {reason}")
    if isinstance(dist, CategoricalDistribution):
        if not dist.choices:
            raise SpecError(f"{where}.choices: empty")
        if len({repr(c) for c in dist.choices}) != len(dist.choices):
            raise SpecError(f"{where}.choices: repeated choice in {dist.choices}")
    else:
        if not dist.low < dist.high:
            raise SpecError(f"{where}: low ({dist.low}) must be below high ({dist.high})")
        if dist.log and dist.low <= 0:
            raise SpecError(f"{where}.low: must be positive with log: true (got {dist.low})")
        if dist.step is not None and dist.step <= 0:
            raise SpecError(f"{where}.step: must be positive (got {dist.step})")
        if dist.log and dist.step not in (None, 1):
            raise SpecError(f"{where}.step: cannot be combined with log: true")
    for cond, allowed in (dist.when or {}).items():
        parent = space.get(cond)
        if parent is None or cond == key:
            raise SpecError(f"{where}.when.{cond}: not another key of this space")
        if not isinstance(parent, CategoricalDistribution):
            raise SpecError(f"{where}.when.{cond}: conditions read categorical keys only")
        bad = [v for v in allowed if v not in parent.choices]
        if bad or not allowed:
            raise SpecError(f"{where}.when.{cond}: {bad or allowed!r} not among the choices {parent.choices}")


def _sample_params(space: dict[str, Distribution]) -> Iterator[dict[str, Any]]:
    """Parameter sets covering every bound and every choice of every key (each key made active), first the one
    with every key at its first value. Only keys whose conditions hold are included, as in a real trial."""
    first = {key: distribution_values(dist)[0] for key, dist in space.items()}
    yield _active(space, first)
    for key, dist in space.items():
        for value in distribution_values(dist):
            chosen = dict(first, **{key: value})
            for cond, allowed in (dist.when or {}).items():
                if chosen[cond] not in allowed:
                    chosen[cond] = allowed[0]
            yield _active(space, chosen)


def _active(space: dict[str, Distribution], chosen: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for key in sampling_order(space):
        if is_active(space[key], params):
            params[key] = chosen[key]
    return params


# --- the ablation section ---------------------------------------------------------------------------------------
def check_ablate(spec: StudySpec) -> None:
    """Every check of the ``ablate`` section beyond its schema; raises :class:`SpecError` naming the key."""
    ablate = spec.ablate
    if ablate is None:
        return
    if ablate.arm not in spec.arms:
        raise SpecError(f"ablate.arm: unknown arm {ablate.arm!r} (arms: {', '.join(spec.arms)})")
    seeds = ablate.seeds or []
    if len(set(seeds)) != len(seeds):
        raise SpecError(f"ablate.seeds: repeated seed in {seeds}")
    if outside := [s for s in seeds if s not in spec.confirm.seeds]:
        raise SpecError(f"ablate.seeds: {outside[0]} is not a confirmation seed (each run's reference is the "
                        "centre's confirmation run on the same seed; null: every confirmation seed)")
    fixed = {**RESERVED_KEYS, **ABLATE_FIXED_KEYS}
    labels: dict[str, str] = {}
    for axis, options in ablate.axes.items():
        _check_ablate_label(f"ablate.axes.{axis}", axis)
        for option, overrides in options.items():
            where = f"ablate.axes.{axis}.{option}"
            _check_ablate_label(where, option)
            label = ablate_label(ablate.arm, axis, option)
            if label in labels or label in spec.arms:
                other = labels.get(label, f"arms.{label}")
                raise SpecError(f"{where}: its arm label {label!r} is also that of {other} (spaces become '_')")
            labels[label] = where
            for key in overrides:
                if key in fixed:
                    raise SpecError(f"{where}.{key}: not ablatable, set by {fixed[key]}")
            _check_override_keys(spec, ablate.arm, where, ablate.overrides(axis, option))
            _check_override_values(spec, ablate.arm, where, ablate.overrides(axis, option))
            _check_retune(spec, axis, option, where)


def _check_retune(spec: StudySpec, axis: str, option: str, where: str) -> None:
    """An option's ``retune`` section: its schema, and a space whose every bound the arm's config takes with the
    option's overrides (checked against the arm's config without its sampled keys, like an arm's space)."""
    try:
        retune = spec.ablate.retune(axis, option)
    except pydantic.ValidationError as exc:
        raise SpecError(validation_line(exc, f"{where}.{RETUNE_KEY}", section=True)) from None
    if retune is None:
        return
    overrides = spec.ablate.overrides(axis, option)
    for key, dist in retune.space.items():
        _check_distribution(f"{where}.{RETUNE_KEY}.space.{key}", key, dist, retune.space)
        if key in overrides:
            raise SpecError(f"{where}.{RETUNE_KEY}.space.{key}: set by the option itself")
    for params in _sample_params(retune.space):
        try:
            config_from_dict(trial_config(spec, spec.ablate.arm, {}, overrides={**overrides, **params}))
        except (ConfigError, SpecError) as exc:
            shown = ", ".join(f"{k}={v!r}" for k, v in params.items())
            raise SpecError(f"{where}.{RETUNE_KEY}.space: {exc} (with {shown})") from None


def _check_ablate_label(where: str, label: str) -> None:
    if not ABLATE_LABEL.match(label):
        raise SpecError(f"{where}: a label uses letters, digits, spaces, '_', '.', '-' (1-64 characters, "
                        "starting with a letter or digit)")


def _check_override_keys(spec: StudySpec, arm: str, where: str, overrides: dict[str, Any]) -> None:
    """Refuse a key that no config of the arm's kind has: one the schema does not know, or one that goes on below
    a value (``arm.rho.x``). Values: :func:`_check_override_values`."""
    base = trial_config(spec, arm, {})
    try:
        Config.model_validate(trial_config(spec, arm, {}, overrides=overrides))
    except SpecError as exc:
        raise SpecError(f"{where}.{exc}") from None
    except pydantic.ValidationError as exc:
        for error in exc.errors():
            if error["type"] == "extra_forbidden":
                raise SpecError(f"{where}.{format_config_error(error)}") from None
            loc = [p for i, p in enumerate(error["loc"]) if not (i == 1 and p in ARM_CLASSES)]
            for key in overrides:  # a mapping the dotted key made where the schema holds a value
                parts = key.split(".")
                if len(loc) < len(parts) and parts[:len(loc)] == loc and not _has_path(base, loc):
                    raise SpecError(f"{where}.{key}: unknown key ({'.'.join(loc)} is not a section)") from None


# pydantic error types raised by a validator that reads other keys too (``arm.stats`` against ``arm.stats_source``):
# whether such a value applies depends on the centre, so it is judged when the option is planned, not at load.
CROSS_KEY_ERRORS = ("value_error", "assertion_error")


def _check_override_values(spec: StudySpec, arm: str, where: str, overrides: dict[str, Any]) -> None:
    """Refuse a value that no configuration of the arm's kind takes (a choice it does not offer, a number out of
    range, a wrong type), naming the option's key and what it takes. A value refused only against other keys
    (a statistic its ``stats_source`` cannot provide) is left to the plan: "not applicable" for that centre."""
    data = trial_config(spec, arm, {}, overrides=overrides)
    try:
        config = Config.model_validate(data)
    except pydantic.ValidationError as exc:
        for error in exc.errors():
            if error["type"] not in CROSS_KEY_ERRORS:
                raise SpecError(f"{where}.{format_config_error(error)}") from None
        return
    try:
        config.eval.check_epochs(config.optim.epochs)
    except ConfigError as exc:
        raise SpecError(f"{where}.{exc}") from None


def check_reference(spec: StudySpec) -> None:
    """``reference`` names an arm of the spec, or the spec has a fixed-λ arm to compare every other arm with."""
    arms = ", ".join(spec.arms)
    if spec.reference is not None and spec.reference not in spec.arms:
        match = closest_key(spec.reference, list(spec.arms))
        hint = f"did you mean {match}?" if match else f"arms: {arms}"
        raise SpecError(f"reference: unknown arm {spec.reference!r} ({hint})")
    if spec.reference_arm() is None:
        raise SpecError(f"reference: missing, and no arm to default to (the default is the first non-PBT arm whose "
                        f"config trains arm.kind: fixed); name the arm every other arm is compared with (arms: {arms})")


def _has_path(data: dict[str, Any], path: list[str]) -> bool:
    for part in path:
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return True
