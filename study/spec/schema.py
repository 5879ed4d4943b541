"""The study spec as data: the schema of every section of the YAML file that says what a study searches, how it
ranks a trial and how it confirms the winners. Strict pydantic models (unknown keys rejected, no coercion); the
checks against diffctl are ``study.spec.checks``, the loading ``study.spec.load``.

Example::

    spec = load_spec("study/specs/quick.yaml")       # study.spec
    spec.arms["fixed"].budget                         # 4
    spec.selection                                    # Objective(metric='triplet_r_A', mode='max')
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union, get_args

from pydantic import Field, model_validator

from diffctl.config import MAX_EPOCHS
from diffctl.schema import Section

from .constraints import Constraint, parse_constraint

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

    def sign(self) -> float:
        """+1 for min, -1 for max: multiplying by it turns the objective into one to minimise."""
        return 1.0 if self.mode == "min" else -1.0


class Asha(Section):
    """Early stopping of an Optuna arm's search (``study.phases.search``): successive halving at the rungs
    grace_period x reduction_factor^k below the last epoch. A search trial at a rung continues when its rung score
    is in the top 1/reduction_factor of the scores its arm's trials of earlier batches recorded there (itself
    included), as Ray's ASHA decides, but against a set that does not depend on which trial finished first."""

    grace_period: int = Field(1, ge=1)
    reduction_factor: float = Field(3.0, gt=1.0)


class Audit(Section):
    """The pruning audit (``study.phases.audit``): per arm and replicate, ``per_arm`` search trials that early
    stopping stopped, drawn with ``seed`` among the best scored at their last rung, trained to the last epoch."""

    per_arm: int = Field(ge=1, le=100)
    seed: int = Field(0, ge=0, le=SEED_MAX)


DistillVariant = Literal["final", "mean", "replay"]
DISTILL_VARIANTS: tuple[str, ...] = get_args(DistillVariant)


class Confirm(Section):
    top_k: int = Field(1, ge=1, le=1000)
    seeds: list[Annotated[int, Field(ge=0, le=SEED_MAX)]] = Field([1001, 1002, 1003], min_length=1)
    # The anytime comparison: every confirmation comparison at these fractions of the epochs (the last one is 1).
    budgets: list[Annotated[float, Field(gt=0.0, le=1.0)]] = Field([0.25, 0.5, 1.0], min_length=1, max_length=20)
    # Distilled baselines of every arm whose weights or rho move (study.phases.distill); [] turns them off.
    distill: list[DistillVariant] = Field(list(DISTILL_VARIANTS), max_length=3)

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
    """An arm's population based training (``study.phases.pbt``): its members train the arm's config for the
    spec's epochs; at every ``perturbation_interval`` epochs the worst ``quantile_fraction`` of the population
    continue from the state of one of the best, with its mutated keys perturbed (``perturbation_factors``) or,
    with ``resample_probability``, drawn afresh from their range."""

    perturbation_interval: int = Field(ge=1, le=MAX_EPOCHS)
    quantile_fraction: float = Field(0.25, gt=0.0, le=0.5)
    resample_probability: float = Field(0.25, ge=0.0, le=1.0)
    perturbation_factors: list[Annotated[float, Field(gt=0.0, le=100.0)]] = Field([1.2, 0.8], min_length=1,
                                                                                  max_length=10)
    seed: int = Field(0, ge=0, le=SEED_MAX)  # the members' initial draws and every perturbation
    mutations: dict[str, Mutation] = Field(min_length=1, max_length=20)  # flat config key -> its range


def as_distribution(mutation: MutationFloat | MutationInt) -> FloatDistribution | IntDistribution:
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


class Retune(Section):
    """An ablation option's own small search (``study.phases.retune``): ``budget`` runs of the centre's
    configuration with the option's overrides and values of ``space`` drawn at random (seeded), on the centre's
    search seed; the best by the ranking rule is what the option's seeds then run."""

    budget: int = Field(ge=1, le=100)
    space: dict[str, Distribution] = Field(min_length=1, max_length=20)


RETUNE_KEY = "retune"  # the key of an ablation option that holds its Retune section (every other key: an override)


class Ablate(Section):
    """The ablation around one arm's confirmed configuration (``study.phases.ablate``)."""

    arm: str
    seeds: list[int] | None = Field(None, min_length=1)  # a subset of confirm.seeds; null: all of them
    # question -> option label -> flat config key -> value applied to the centre's configuration (and, under the
    # key ``retune``, the option's own small search)
    axes: dict[str, Annotated[dict[str, Annotated[dict[str, Any], Field(min_length=1, max_length=21)]],
                              Field(min_length=1, max_length=10)]] = Field(min_length=1, max_length=20)

    def overrides(self, axis: str, option: str) -> dict[str, Any]:
        """An option's flat config overrides (without its ``retune`` section)."""
        return {k: v for k, v in self.axes[axis][option].items() if k != RETUNE_KEY}

    def retune(self, axis: str, option: str) -> Retune | None:
        """An option's own small search, if it has one (validated by ``study.spec.checks``)."""
        section = self.axes[axis][option].get(RETUNE_KEY)
        return None if section is None else Retune.model_validate(section)


class StudySpec(Section):
    name: str | None = Field(None, pattern=LABEL_PATTERN)
    epochs: int = Field(ge=1, le=MAX_EPOCHS)
    base: dict[str, Any] = {}
    objectives: list[Objective] = Field(min_length=1)
    constraints: list[str] = []
    # How every stage ranks trials: this metric, feasible trials first (default: the first objective).
    selection: Objective
    sampler_seed: int = Field(0, ge=0, le=SEED_MAX)
    max_concurrent: int = Field(2, ge=1, le=MAX_CONCURRENT)
    cpus_per_trial: int = Field(1, ge=1, le=256)
    # An Optuna arm's search asks Optuna for this many trials at a time and tells it their ends in trial order once
    # all have ended, so that what is searched does not depend on the machine's load (study.phases.search).
    search_batch: int = Field(4, ge=1, le=MAX_CONCURRENT)
    # How many times each arm's search runs, with sampler seeds derived apart (each replicate's pick is confirmed).
    search_replicates: int = Field(1, ge=1, le=20)
    asha: Asha | None = None
    audit: Audit | None = None  # null: no pruning audit
    confirm: Confirm = Confirm()
    # Equivalence margins per metric (the two one-sided tests of the analysis): |difference| < margin is
    # "equivalent". A metric without a margin can be better, worse or inconclusive, never equivalent.
    equivalence: dict[str, Annotated[float, Field(gt=0.0)]] = {}
    arms: dict[str, ArmSpec] = Field(min_length=1)
    ablate: Ablate | None = None  # null: no ablation phase

    @model_validator(mode="before")
    @classmethod
    def _selection_defaults_to_the_first_objective(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("selection") is None:
            objectives = data.get("objectives")
            if isinstance(objectives, list) and objectives:
                data = {**data, "selection": objectives[0]}
        return data

    def parsed_constraints(self) -> list[Constraint]:
        return [parse_constraint(text, f"constraints[{i}]") for i, text in enumerate(self.constraints)]

    def tracked_objectives(self) -> list[Objective]:
        """The objectives followed by the selection metric when it is not one of them."""
        extra = [] if any(o.metric == self.selection.metric for o in self.objectives) else [self.selection]
        return [*self.objectives, *extra]

    def named_metrics(self) -> list[tuple[str, str]]:
        """(spec key, metric) of every record field the spec names: objectives, selection, constraints."""
        named = [(f"objectives[{i}].metric", o.metric) for i, o in enumerate(self.objectives)]
        named.append(("selection.metric", self.selection.metric))
        return named + [(f"constraints[{i}]", c.metric) for i, c in enumerate(self.parsed_constraints())]
