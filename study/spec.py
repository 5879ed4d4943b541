"""The study spec: one YAML file that says what a study searches, how it judges a trial and how it confirms
the winners. Validated like every config (pydantic, strict, unknown keys rejected) and then checked against
diffctl itself before anything starts: every config a trial can receive is validated by
``diffctl.config.config_from_dict``, and every metric named is looked up in a real epoch record of each arm.
Every error is one line that names the offending key.

Example::

    spec = load_spec("study/specs/quick.yaml")
    spec.arms["fixed"].budget            # 4
    spec.trial_config("fixed", {"arm.w_kl": 0.2}, seed=1001)["arm"]  # {'kind': 'fixed', 'w_kl': 0.2}
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Annotated, Any, Iterator, Literal, Union

import pydantic
import yaml
from pydantic import Field

from diffctl.config import MAX_EPOCHS, ConfigError, config_from_dict, read_yaml_file
from diffctl.config import format_validation_error as format_config_error
from diffctl.errors import InputError
from diffctl.schema import Section

from .objectives import check_metric, parse_constraint, record_fields

LABEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
SEED_MAX = 2**31 - 1
MAX_CONCURRENT = 4096
# Keys the spec owns: every trial of a study trains for the same epochs with the same thread count.
RESERVED_KEYS = {"optim.epochs": "the spec's epochs", "optim.threads": "the spec's cpus_per_trial"}

# A categorical choice may also be a list or a mapping (e.g. a subset of controller statistics).
Choice = Union[bool, int, float, str, None, list[Any], dict[str, Any]]


class SpecError(InputError):
    """A bad study spec; its message is one line naming the offending key."""


class _Distribution(Section):
    # Only sample this key when every named categorical key took one of the listed values.
    when: dict[str, list[Choice]] | None = None


class FloatDistribution(_Distribution):
    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    step: float | None = None


class IntDistribution(_Distribution):
    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    step: int = 1


class CategoricalDistribution(_Distribution):
    type: Literal["categorical"]
    choices: list[Choice]


Distribution = Annotated[
    Union[FloatDistribution, IntDistribution, CategoricalDistribution], Field(discriminator="type")
]
DISTRIBUTION_TYPES = ("float", "int", "categorical")


class Objective(Section):
    metric: str
    mode: Literal["min", "max"]


class Asha(Section):
    grace_period: int = Field(1, ge=1)
    reduction_factor: float = Field(3.0, gt=1.0)


class Confirm(Section):
    top_k: int = Field(1, ge=1, le=1000)
    seeds: list[Annotated[int, Field(ge=0, le=SEED_MAX)]] = Field([1001, 1002, 1003], min_length=1)


class ArmSpec(Section):
    budget: int = Field(ge=1, le=100_000)
    config: dict[str, Any] = {}
    space: dict[str, Distribution] = {}


class StudySpec(Section):
    name: str | None = Field(None, pattern=LABEL_PATTERN)
    epochs: int = Field(ge=1, le=MAX_EPOCHS)
    base: dict[str, Any] = {}
    objectives: list[Objective] = Field(min_length=1)
    constraints: list[str] = []
    selection: Objective | None = None
    sampler_seed: int = Field(0, ge=0, le=SEED_MAX)
    max_concurrent: int = Field(2, ge=1, le=MAX_CONCURRENT)
    cpus_per_trial: int = Field(1, ge=1, le=256)
    asha: Asha | None = None
    confirm: Confirm = Confirm()
    arms: dict[str, ArmSpec] = Field(min_length=1)

    def trial_config(self, arm: str, params: dict[str, Any], seed: int | None = None) -> dict[str, Any]:
        """The diffctl config (as a dict) of one trial: base, then the arm's config, then the spec's epochs and
        threads, then the sampled flat ``params``, then ``seed`` when given."""
        data = copy.deepcopy(self.base)
        _merge(data, copy.deepcopy(self.arms[arm].config))
        _merge(data, {"optim": {"epochs": self.epochs, "threads": self.cpus_per_trial}})
        for key, value in params.items():
            _set_flat(data, key, value)
        if seed is not None:
            data["seed"] = seed
        return data

    def confirm_runs_per_arm(self) -> int:
        """Upper bound of an arm's confirmation runs (top_k x seeds; fewer when fewer search trials qualify)."""
        return self.confirm.top_k * len(self.confirm.seeds)

    def confirm_runs(self) -> int:
        """Upper bound of the confirmation runs of the whole study."""
        return len(self.arms) * self.confirm_runs_per_arm()

    def total_trials(self) -> int:
        return sum(arm.budget for arm in self.arms.values()) + self.confirm_runs()


def _merge(into: dict, extra: dict) -> None:
    """Deep-merge ``extra`` into ``into``; a section with a different ``kind`` (an arm) replaces the old one."""
    for key, value in extra.items():
        old = into.get(key)
        if isinstance(old, dict) and isinstance(value, dict) and old.get("kind", value.get("kind")) == value.get(
            "kind", old.get("kind")
        ):
            _merge(old, value)
        else:
            into[key] = value


def _set_flat(data: dict, key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    node = data
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise SpecError(f"{key}: {part} is not a section")
        node = child
    node[leaf] = value


def flat_keys(data: dict, prefix: str = "") -> Iterator[str]:
    """The dotted leaf keys of a nested mapping."""
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            yield from flat_keys(value, path + ".")
        else:
            yield path


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


# --- loading ----------------------------------------------------------------------------------------------------
def _format_error(err: dict) -> str:
    loc = [str(p) for p in err["loc"]]
    # A tagged union puts the distribution type after the space key ('space', 'arm.rho', 'float', 'low'): drop it.
    loc = [p for i, p in enumerate(loc) if not (p in DISTRIBUTION_TYPES and i >= 2 and loc[i - 2] == "space")]
    key = ".".join(loc)
    if err["type"] == "missing":
        return f"{key}: missing"
    if err["type"] == "union_tag_invalid":
        known = ", ".join(DISTRIBUTION_TYPES)
        return f"{key}.type: unknown distribution type {err['input'].get('type')!r} (known: {known})"
    if err["type"] == "union_tag_not_found":
        return f"{key}.type: missing (known: {', '.join(DISTRIBUTION_TYPES)})"
    # Everything else reads as a config error does ("<key>: unknown key", "<key>: <message> (got <value>)").
    return format_config_error(dict(err, loc=tuple(loc)))


def spec_from_dict(data: Any) -> StudySpec:
    """Validate the schema of a spec (no check against diffctl yet)."""
    if not isinstance(data, dict):
        raise SpecError(f"spec: expected a mapping, got {type(data).__name__}")
    try:
        return StudySpec.model_validate(data)
    except pydantic.ValidationError as exc:
        raise SpecError(_format_error(exc.errors()[0])) from None


def read_spec_file(path: Path) -> StudySpec:
    """A spec file checked against the schema only (a study's saved ``spec.yaml``); errors name the file."""
    data = read_yaml_file(path)  # its errors name the file already
    try:
        return spec_from_dict(data)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None


def load_spec(
    path: str | Path, *, name: str | None = None, max_concurrent: int | None = None, probe: bool = True
) -> StudySpec:
    """Read, validate and check a spec file; returns it resolved (name, selection and concurrency filled in).

    ``name`` and ``max_concurrent`` override the spec's (the ``--name`` and ``--max-concurrent`` options).
    ``probe=False`` skips the metric check (a one-step epoch per arm kind), for a spec that already passed it.
    """
    spec = spec_from_dict(read_yaml_file(path))
    if name is not None and not re.match(LABEL_PATTERN, name):
        raise SpecError(f"--name {name!r}: use letters, digits, '_', '.', '-' (at most 64 characters)")
    if max_concurrent is not None and not 1 <= max_concurrent <= MAX_CONCURRENT:
        raise SpecError(f"--max-concurrent {max_concurrent}: must be 1..{MAX_CONCURRENT}")
    resolved_name = name or spec.name or Path(path).stem
    if not re.match(LABEL_PATTERN, resolved_name):
        raise SpecError(f"name: {resolved_name!r} is not a valid study name (set name: in the spec or --name)")
    spec = spec.model_copy(
        update={
            "name": resolved_name,
            "selection": spec.selection or spec.objectives[0],
            "max_concurrent": max_concurrent or spec.max_concurrent,
        }
    )
    check_spec(spec, probe=probe)
    return spec


def dump_spec(spec: StudySpec) -> str:
    return yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)


# --- checks against diffctl -------------------------------------------------------------------------------------
def check_spec(spec: StudySpec, probe: bool = True) -> None:
    """Every check that needs more than the schema; raises :class:`SpecError` naming the key. ``probe``: also
    look every metric up in a real epoch record of each arm kind."""
    for key in flat_keys(spec.base):
        if key in RESERVED_KEYS:
            raise SpecError(f"base.{key}: set by {RESERVED_KEYS[key]}")
    try:  # the arm section is checked with each arm's own config, which may change its kind
        config_from_dict({k: v for k, v in spec.base.items() if k != "arm"})
    except ConfigError as exc:
        raise SpecError(f"base: {exc}") from None
    for label, arm in spec.arms.items():
        _check_arm(spec, label, arm)
    if len(set(spec.confirm.seeds)) != len(spec.confirm.seeds):
        raise SpecError(f"confirm.seeds: repeated seed in {spec.confirm.seeds}")
    constraints = [parse_constraint(text, f"constraints[{i}]") for i, text in enumerate(spec.constraints)]
    uses = [(f"objectives[{i}].metric", o.metric) for i, o in enumerate(spec.objectives)]
    if len({o.metric for o in spec.objectives}) != len(spec.objectives):
        raise SpecError("objectives: the same metric is listed twice")
    uses.append(("selection.metric", spec.selection.metric if spec.selection else spec.objectives[0].metric))
    uses += [(f"constraints[{i}]", c.metric) for i, c in enumerate(constraints)]
    if not probe:
        return
    probed: dict[str, dict[str, Any]] = {}
    for label in spec.arms:
        # The arm's config without sampled keys: a sampled extreme (lr = 10) may well diverge in the probe. One
        # thread: the record's fields do not depend on it, and a count beyond the machine's would only slow it.
        config = config_from_dict(spec.trial_config(label, {}))
        config = config.model_copy(update={"optim": config.optim.model_copy(update={"threads": 1})})
        kind = config.arm.kind
        if kind not in probed:
            probed[kind] = record_fields(config, f"arms.{label}")
        for where, metric in uses:
            check_metric(metric, probed[kind], where, label)


def _check_arm(spec: StudySpec, label: str, arm: ArmSpec) -> None:
    where = f"arms.{label}"
    if not re.match(LABEL_PATTERN, label):
        raise SpecError(f"{where}: an arm label uses letters, digits, '_', '.', '-' (at most 64 characters)")
    for key in flat_keys(arm.config):
        if key in RESERVED_KEYS:
            raise SpecError(f"{where}.config.{key}: set by {RESERVED_KEYS[key]}")
    if not arm.space:
        raise SpecError(f"{where}.space: empty (an arm needs at least one searched key; its budget buys nothing)")
    for key, dist in arm.space.items():
        _check_distribution(f"{where}.space.{key}", key, dist, arm.space)
    try:
        sampling_order(arm.space)
    except SpecError as exc:
        raise SpecError(f"{where}.{exc}") from None
    try:
        config_from_dict(spec.trial_config(label, {}))
    except ConfigError as exc:
        raise SpecError(f"{where}.config: {exc}") from None
    for params in _sample_params(arm.space):
        try:
            config = config_from_dict(spec.trial_config(label, params))
        except ConfigError as exc:
            shown = ", ".join(f"{k}={v!r}" for k, v in params.items())
            raise SpecError(f"{where}.space: {exc} (with {shown})") from None
        if config.seed in spec.confirm.seeds:
            raise SpecError(
                f"confirm.seeds: {config.seed} is the search seed of arm {label}; confirmation needs fresh seeds"
            )


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


def check_resources(spec: StudySpec, cpus: float, where: str) -> None:
    """A trial asking for more CPUs than one node has would wait forever: refuse it before anything starts."""
    if spec.cpus_per_trial > cpus:
        raise SpecError(f"cpus_per_trial: {spec.cpus_per_trial} is more than {where} has ({cpus:g} CPUs)")
