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

from diffctl.config import MAX_EPOCHS, read_yaml_file
from diffctl.config import format_validation_error as format_config_error
from diffctl.errors import InputError
from diffctl.schema import Section

from .ablate import Ablate, ablate_runs_bound
from .full_eval import add_full_epochs

LABEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
SEED_MAX = 2**31 - 1
MAX_CONCURRENT = 4096
TPE_STARTUP = 10  # Optuna's default n_startup_trials
# Metrics the analysis derives from a run's epochs (not record fields) that may carry an equivalence margin.
DERIVED_METRICS = ("epochs_to_exact_match",)
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
    # The anytime comparison: every confirmation comparison at these fractions of the epochs (the last one is 1).
    budgets: list[Annotated[float, Field(gt=0.0, le=1.0)]] = Field([0.25, 0.5, 1.0], min_length=1, max_length=20)
    # Distilled baselines of every arm whose weights or rho move (study.distill); [] turns them off.
    distill: list[Literal["final", "mean", "replay"]] = Field(["final", "mean", "replay"], max_length=3)

    def budget_epochs(self, epochs: int) -> list[tuple[float, int]]:
        """(fraction, epoch) of each budget, the epoch rounded and at least 1, in increasing order, once each."""
        found: dict[int, float] = {}
        for fraction in sorted(set(self.budgets) | {1.0}):
            found.setdefault(max(1, round(fraction * epochs)), fraction)
        return [(fraction, epoch) for epoch, fraction in sorted(found.items())]


class MutationFloat(Section):
    type: Literal["float"]
    low: float
    high: float
    log: bool = False


class MutationInt(Section):
    type: Literal["int"]
    low: int
    high: int
    log: bool = False


Mutation = Annotated[Union[MutationFloat, MutationInt], Field(discriminator="type")]
MUTATION_TYPES = ("float", "int")


class Pbt(Section):
    """An arm's population based training (``study.pbt``): its members train the arm's config for the spec's
    epochs; at every ``perturbation_interval`` epochs the worst ``quantile_fraction`` of the population continue
    from the state of one of the best, with its mutated keys perturbed (``perturbation_factors``) or, with
    ``resample_probability``, drawn afresh from their range."""

    perturbation_interval: int = Field(ge=1, le=MAX_EPOCHS)
    quantile_fraction: float = Field(0.25, gt=0.0, le=0.5)
    resample_probability: float = Field(0.25, ge=0.0, le=1.0)
    perturbation_factors: list[Annotated[float, Field(gt=0.0, le=100.0)]] = Field([1.2, 0.8], min_length=1,
                                                                                  max_length=10)
    seed: int = Field(0, ge=0, le=SEED_MAX)  # the members' initial draws and every perturbation
    mutations: dict[str, Mutation] = Field(min_length=1, max_length=20)  # flat config key -> its range


def as_distribution(mutation: MutationFloat | MutationInt) -> Distribution:
    """A mutation's range as the search distribution of the same range (for the checks they share)."""
    kind = FloatDistribution if isinstance(mutation, MutationFloat) else IntDistribution
    return kind(**mutation.model_dump())


OPTUNA, PBT = "optuna", "pbt"  # an arm's search: Optuna's TPE over its space, or population based training


class ArmSpec(Section):
    budget: int = Field(ge=1, le=100_000)  # Optuna trials, or the population of a PBT arm
    search: Literal["optuna", "pbt"] = OPTUNA
    config: dict[str, Any] = {}
    space: dict[str, Distribution] = {}
    pbt: Pbt | None = None  # search pbt only
    # TPE's random start-up trials; null: a third of the budget, at least 2 and at most Optuna's default of 10
    # (with Optuna's default every arm of a budget below 10 would be a pure random search).
    startup_trials: int | None = Field(None, ge=0, le=100_000)

    def startup(self) -> int:
        """The arm's TPE start-up trials (drawn at random before TPE models the finished ones)."""
        if self.startup_trials is not None:
            return self.startup_trials
        return min(TPE_STARTUP, max(2, self.budget // 3))

    @property
    def is_pbt(self) -> bool:
        return self.search == PBT


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
    # Equivalence margins per metric (the two one-sided tests of the analysis): |difference| < margin is
    # "equivalent". A metric without a margin can be better, worse or inconclusive, never equivalent.
    equivalence: dict[str, Annotated[float, Field(gt=0.0)]] = {}
    arms: dict[str, ArmSpec] = Field(min_length=1)
    ablate: Ablate | None = None  # null: no ablation phase

    def trial_config(self, arm: str, params: dict[str, Any], seed: int | None = None,
                     overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """The diffctl config (as a dict) of one trial: base, then the arm's config, then the spec's epochs and
        threads, then the sampled flat ``params``, then an ablation option's flat ``overrides``, then ``seed`` when
        given; with ``eval.full_every`` > 1, every epoch the study reads is added to ``eval.full_epochs``
        (``study.full_eval``)."""
        data = copy.deepcopy(self.base)
        _merge(data, copy.deepcopy(self.arms[arm].config))
        _merge(data, {"optim": {"epochs": self.epochs, "threads": self.cpus_per_trial}})
        for key, value in {**params, **copy.deepcopy(overrides or {})}.items():
            _set_flat(data, key, value)
        if seed is not None:
            data["seed"] = seed
        return add_full_epochs(self, data, self.arms[arm].pbt)

    def pbt_arms(self) -> list[str]:
        """The arms searched by population based training, in spec order."""
        return [label for label, arm in self.arms.items() if arm.is_pbt]

    def confirm_runs_per_arm(self, arm: str) -> int:
        """Upper bound of an arm's confirmation runs: top_k x seeds (fewer when fewer search trials qualify); a PBT
        arm confirms its best member's schedule only, once per seed."""
        return (1 if self.arms[arm].is_pbt else self.confirm.top_k) * len(self.confirm.seeds)

    def confirm_runs(self) -> int:
        """Upper bound of the confirmation runs of the whole study."""
        return sum(self.confirm_runs_per_arm(arm) for arm in self.arms)

    def total_trials(self) -> int:
        from .distill import distilled_arms  # distill reads the spec: imported here, not at the top

        # one distilled run per confirmation run of its source arm
        distilled = sum(self.confirm_runs_per_arm(source) for _, source, _ in distilled_arms(self))
        return sum(arm.budget for arm in self.arms.values()) + self.confirm_runs() + distilled + ablate_runs_bound(self)


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
    # (likewise a PBT mutation: ('arms', 'pbt', 'pbt', 'mutations', 'arm.rho', 'float', 'low')).
    loc = [p for i, p in enumerate(loc)
           if not (p in DISTRIBUTION_TYPES and i >= 2 and loc[i - 2] in ("space", "mutations"))]
    key = ".".join(loc)
    known = ", ".join(MUTATION_TYPES if len(loc) >= 2 and loc[-2] == "mutations" else DISTRIBUTION_TYPES)
    if err["type"] == "missing":
        return f"{key}: missing"
    if err["type"] == "union_tag_invalid":
        return f"{key}.type: unknown distribution type {err['input'].get('type')!r} (known: {known})"
    if err["type"] == "union_tag_not_found":
        return f"{key}.type: missing (known: {known})"
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
    from .spec_checks import check_spec  # the checks read this module's classes: imported here

    check_spec(spec, probe=probe)
    return spec


def dump_spec(spec: StudySpec) -> str:
    return yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)


def check_resources(spec: StudySpec, cpus: float, where: str) -> None:
    """A trial asking for more CPUs than one node has would wait forever: refuse it before anything starts."""
    if spec.cpus_per_trial > cpus:
        raise SpecError(f"cpus_per_trial: {spec.cpus_per_trial} is more than {where} has ({cpus:g} CPUs)")
