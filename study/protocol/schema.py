"""The study spec as data: the schema of every section of the YAML file that says what a study searches, how it
ranks a trial and how it confirms the winners. Strict pydantic models (unknown keys rejected, no coercion); the
checks against diffctl are ``study.protocol.checks``, the loading ``study.protocol.load``.

Example::

    spec = load_spec("study/specs/quick.yaml")       # study.protocol
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
# Keys the spec owns: every trial of a study trains for the same epochs with the same thread count; the test
# split is evaluated in every run but the search trials (study.trainable), so no decision can read it.
RESERVED_KEYS = {"optim.epochs": "the spec's epochs", "optim.threads": "the spec's cpus_per_trial",
                 "eval.test_split": "the study (on for every run but the search trials)"}

# A categorical choice may also be a list or a mapping (e.g. a subset of controller statistics).
Choice = Union[bool, int, float, str, None, list[Any], dict[str, Any]]


class _Distribution(Section):
    # Only sample this key when every named categorical key took one of the listed values.
    when: dict[str, list[Choice]] | None = Field(
        None, description="sample this key only when each named categorical key of the same space took one of the "
        "listed values ({key: [values]}; null: always)")


class FloatDistribution(_Distribution):
    type: Literal["float"] = Field(description="a real number between low and high")
    low: float = Field(description="the lowest value")
    high: float = Field(description="the highest value (above low)")
    log: bool = Field(False, description="sample on a log scale (low > 0)")
    step: float | None = Field(None, description="sample on a grid of this step from low (null: continuous)")


class IntDistribution(_Distribution):
    type: Literal["int"] = Field(description="an integer between low and high, both included")
    low: int = Field(description="the lowest value")
    high: int = Field(description="the highest value (above low)")
    log: bool = Field(False, description="sample on a log scale (low > 0)")
    step: int = Field(1, description="sample every step-th integer from low")


class CategoricalDistribution(_Distribution):
    type: Literal["categorical"] = Field(description="one of the listed choices")
    choices: list[Choice] = Field(description="the values to choose from, distinct (a choice may be a list or a "
                                  "mapping)")


Distribution = Annotated[
    Union[FloatDistribution, IntDistribution, CategoricalDistribution], Field(discriminator="type")
]
DISTRIBUTION_TYPES = ("float", "int", "categorical")


class Objective(Section):
    metric: str = Field(description="a numeric field of the epoch record (per-VAE metrics end in _A or _B: "
                        "triplet_r_A; diffctl study check names them)")
    mode: Literal["min", "max"] = Field(description="which direction is better")

    def sign(self) -> float:
        """+1 for min, -1 for max: multiplying by it turns the objective into one to minimise."""
        return 1.0 if self.mode == "min" else -1.0


class Asha(Section):
    """Early stopping of an Optuna arm's search (``study.phases.search``): successive halving at the rungs
    grace_period x reduction_factor^k below the last epoch. A search trial at a rung continues when its rung score
    is in the top 1/reduction_factor of the scores its arm's trials of earlier batches recorded there (itself
    included), as Ray's ASHA decides, but against a set that does not depend on which trial finished first."""

    grace_period: int = Field(1, ge=1, description="the first rung's epoch (longer than any warm-up an arm can "
                              "draw)")
    reduction_factor: float = Field(3.0, gt=1.0, description="rungs at grace_period x reduction_factor^k; at each "
                                    "the top 1/reduction_factor continue")


class Audit(Section):
    """The pruning audit (``study.phases.audit``): per arm and replicate, ``per_arm`` search trials that early
    stopping stopped, drawn with ``seed`` among the best scored at their last rung, trained to the last epoch."""

    per_arm: int = Field(ge=1, le=100, description="stopped search trials per arm and replicate trained to the "
                         "last epoch")
    seed: int = Field(0, ge=0, le=SEED_MAX, description="seed of the draw among the best stopped trials")


DistillVariant = Literal["final", "mean", "replay"]
DISTILL_VARIANTS: tuple[str, ...] = get_args(DistillVariant)


class Confirm(Section):
    top_k: int = Field(1, ge=1, le=1000, description="configurations confirmed per arm and search replicate (the "
                       "best by the ranking rule)")
    seeds: list[Annotated[int, Field(ge=0, le=SEED_MAX)]] = Field(
        [1001, 1002, 1003], min_length=1, description="fresh seeds each confirmed configuration trains on, distinct "
        "(none may be a search seed)")
    # The anytime comparison: every confirmation comparison at these fractions of the epochs (the last one is 1).
    budgets: list[Annotated[float, Field(gt=0.0, le=1.0)]] = Field(
        [0.25, 0.5, 1.0], min_length=1, max_length=20, description="fractions of the epochs at which the anytime "
        "comparison also compares the arms (1 is always added)")
    # Distilled baselines of every arm whose weights or rho move (study.phases.distill); [] turns them off.
    distill: list[DistillVariant] = Field(
        list(DISTILL_VARIANTS), max_length=3, description="distilled baselines of every arm whose weights or rho "
        "move: final, mean (held constant), replay (open loop); []: none")

    def budget_epochs(self, epochs: int) -> list[tuple[float, int]]:
        """(fraction, epoch) of each budget, the epoch rounded and at least 1, in increasing order, once each."""
        found: dict[int, float] = {}
        for fraction in sorted(set(self.budgets) | {1.0}):
            found.setdefault(max(1, round(fraction * epochs)), fraction)
        return [(fraction, epoch) for epoch, fraction in sorted(found.items())]


class MutationFloat(Section):
    type: Literal["float"] = Field(description="a real number between low and high")
    low: float = Field(description="the lowest value")
    high: float = Field(description="the highest value (above low)")
    log: bool = Field(False, description="draw on a log scale (low > 0)")


class MutationInt(Section):
    type: Literal["int"] = Field(description="an integer between low and high")
    low: int = Field(description="the lowest value")
    high: int = Field(description="the highest value (above low)")
    log: bool = Field(False, description="draw on a log scale (low > 0)")


Mutation = Annotated[Union[MutationFloat, MutationInt], Field(discriminator="type")]
MUTATION_TYPES = ("float", "int")


class Pbt(Section):
    """An arm's population based training (``study.phases.pbt``): its members train the arm's config for the
    spec's epochs; at every ``perturbation_interval`` epochs the worst ``quantile_fraction`` of the population
    continue from the state of one of the best, with its mutated keys perturbed (``perturbation_factors``) or,
    with ``resample_probability``, drawn afresh from their range."""

    perturbation_interval: int = Field(ge=1, le=MAX_EPOCHS, description="epochs between two rankings of the "
                                       "population (below epochs)")
    quantile_fraction: float = Field(0.25, gt=0.0, le=0.5, description="the worst share of the population, which "
                                     "continues from one of the best at each ranking")
    resample_probability: float = Field(0.25, ge=0.0, le=1.0, description="probability that a mutated value is "
                                        "drawn afresh from its range instead of perturbed")
    perturbation_factors: list[Annotated[float, Field(gt=0.0, le=100.0)]] = Field(
        [1.2, 0.8], min_length=1, max_length=10, description="factors a continuing member's mutated values are "
        "multiplied by")
    seed: int = Field(0, ge=0, le=SEED_MAX,  # the members' initial draws and every perturbation
                      description="seed of the members' initial draws and of every perturbation")
    mutations: dict[str, Mutation] = Field(  # flat config key -> its range
        min_length=1, max_length=20, description="flat config key -> its range (type float or int, low, high, log), "
        "among arm.rho, arm.w_recon, arm.w_kl, arm.w_rank, arm.w_ent, optim.lr")


def as_distribution(mutation: MutationFloat | MutationInt) -> FloatDistribution | IntDistribution:
    """A mutation's range as the search distribution of the same range (for the checks they share)."""
    kind = FloatDistribution if isinstance(mutation, MutationFloat) else IntDistribution
    return kind(**mutation.model_dump())


OPTUNA, PBT = "optuna", "pbt"  # an arm's search: Optuna's TPE over its space, or population based training


class ArmSpec(Section):
    budget: int = Field(ge=1, le=100_000,  # Optuna trials, or the population of a PBT arm
                        description="search trials per replicate (Optuna), or the population (PBT)")
    search: Literal["optuna", "pbt"] = Field(OPTUNA, description="optuna: TPE over space; pbt: population based "
                                             "training over pbt.mutations")
    config: dict[str, Any] = Field({}, description="the arm's own part of the diffctl config, merged over base "
                                   "(diffctl config show: every key)")
    space: dict[str, Distribution] = Field({}, description="flat config key -> the distribution its search draws "
                                           "from (Optuna arms)")
    pbt: Pbt | None = Field(None, description="population based training (search: pbt only)")  # search pbt only
    # TPE's random start-up trials; null: a third of the budget, at least 2 and at most Optuna's default of 10
    # (with Optuna's default every arm of a budget below 10 would be a pure random search).
    startup_trials: int | None = Field(None, ge=0, le=100_000, description="TPE's random start-up trials (null: "
                                       "budget // 3, within 2..10)")

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

    budget: int = Field(ge=1, le=100, description="runs of the option's own random search")
    space: dict[str, Distribution] = Field(min_length=1, max_length=20, description="flat config key -> the "
                                           "distribution drawn from at random")


RETUNE_KEY = "retune"  # the key of an ablation option that holds its Retune section (every other key: an override)


class Ablate(Section):
    """The ablation around one arm's confirmed configuration (``study.phases.ablate``)."""

    arm: str = Field(description="the arm whose confirmed configuration is the centre")
    seeds: list[int] | None = Field(None, min_length=1,  # a subset of confirm.seeds; null: all of them
                                    description="ablation seeds, a subset of confirm.seeds (null: all of them)")
    # question -> option label -> flat config key -> value applied to the centre's configuration (and, under the
    # key ``retune``, the option's own small search)
    axes: dict[str, Annotated[dict[str, Annotated[dict[str, Any], Field(min_length=1, max_length=21)]],
                              Field(min_length=1, max_length=10)]] = Field(
        min_length=1, max_length=20, description="question -> option label -> flat config key -> value applied to "
        "the centre, each value checked at load (the key retune: the option's own small search)")

    def overrides(self, axis: str, option: str) -> dict[str, Any]:
        """An option's flat config overrides (without its ``retune`` section)."""
        return {k: v for k, v in self.axes[axis][option].items() if k != RETUNE_KEY}

    def retune(self, axis: str, option: str) -> Retune | None:
        """An option's own small search, if it has one (validated by ``study.protocol.checks``)."""
        section = self.axes[axis][option].get(RETUNE_KEY)
        return None if section is None else Retune.model_validate(section)


class Front(Section):
    """The fixed-λ front (``study.phases.front``): a grid of constant settings of one arm (the product of the
    listed values of each flat key, every other key at the arm's config), each run to the last epoch, without
    early stopping, on every listed seed. The seeds include the arm's search seed, on which the grid points
    compete with the arm's search trials for its pick (``study.phases.front``)."""

    arm: str = Field(description="the Optuna arm whose constant settings the front sweeps")
    grid: dict[str, Annotated[list[Choice], Field(min_length=1, max_length=100)]] = Field(
        min_length=1, max_length=4, description="flat config key -> its values; the front runs their product, every "
        "other key at the arm's config")
    seeds: list[Annotated[int, Field(ge=0, le=SEED_MAX)]] = Field(
        min_length=1, max_length=20, description="seeds each grid point runs on: the arm's search seed (there the "
        "points compete for its pick) and others of the front's own")


class StudySpec(Section):
    name: str | None = Field(None, pattern=LABEL_PATTERN, description="the study's name (null: the spec file's "
                             "stem; --name overrides it)")
    epochs: int = Field(ge=1, le=MAX_EPOCHS, description="optim.epochs of every trial")
    base: dict[str, Any] = Field({}, description="the diffctl config part common to every trial (diffctl config "
                                 "show: every key)")
    objectives: list[Objective] = Field(min_length=1, description="final-record fields every arm is compared on "
                                        "(reported, not searched)")
    constraints: list[str] = Field([], description="feasibility on the final record: 'METRIC OP NUMBER', OP one of "
                                   ">=, <=, >, <")
    # How every stage ranks trials: this metric, feasible trials first (default: the first objective).
    selection: Objective = Field(description="the ranking rule of every stage: this metric, feasible trials first "
                                 "(null: the first objective)")
    sampler_seed: int = Field(0, ge=0, le=SEED_MAX, description="seed of the TPE samplers (each arm's is derived "
                              "from it and its label)")
    max_concurrent: int = Field(2, ge=1, le=MAX_CONCURRENT, description="trials running at once (--max-concurrent "
                                "overrides it)")
    cpus_per_trial: int = Field(1, ge=1, le=256, description="CPUs each trial reserves, = its torch threads")
    # An Optuna arm's search asks Optuna for this many trials at a time and tells it their ends in trial order once
    # all have ended, so that what is searched does not depend on the machine's load (study.phases.search).
    search_batch: int = Field(4, ge=1, le=MAX_CONCURRENT, description="Optuna trials asked at a time per arm and "
                              "replicate, told in slot order once all have ended")
    # How many times each arm's search runs, with sampler seeds derived apart (each replicate's pick is confirmed).
    search_replicates: int = Field(1, ge=1, le=20, description="times each arm's search runs, sampler seeds derived "
                                   "apart (each replicate's pick is confirmed)")
    # The first trial of each replicate of every Optuna arm runs the arm's own defaults (study.protocol.reference);
    # false: every trial is drawn (a search whose defaults are not a meaningful point of its space).
    defaults_first: bool = Field(True, description="the first trial of each replicate of every Optuna arm runs the "
                                 "arm's own defaults (false: every trial is drawn)")
    asha: Asha | None = Field(None, description="early stopping of the Optuna searches (null: none)")
    audit: Audit | None = Field(None, description="the pruning audit: stopped trials trained to the end (needs "
                                "asha; null: none)")  # null: no pruning audit
    confirm: Confirm = Field(Confirm(), description="each arm's picks trained again on fresh seeds")
    # Equivalence margins per metric (the two one-sided tests of the analysis): |difference| < margin is
    # "equivalent". A metric without a margin can be better, worse or inconclusive, never equivalent.
    equivalence: dict[str, Annotated[float, Field(gt=0.0)]] = Field(
        {}, description="metric -> margin of the equivalence tests (|difference| < margin is equivalent)")
    arms: dict[str, ArmSpec] = Field(min_length=1, description="arm label -> what the arm trains and how it is "
                                     "searched")
    # The arm every other arm is compared with (StudySpec.reference_arm: the one rule of the study and analysis).
    reference: str | None = Field(None, description="the arm every other arm is compared with: verdicts, winner, "
                                  "box, compute, freedom (null: the first non-PBT arm training arm.kind fixed)")
    ablate: Ablate | None = Field(None, description="the ablation around one arm's confirmed configuration (null: "
                                  "none)")  # null: no ablation phase
    front: Front | None = Field(None, description="the fixed-λ front: a grid of constant settings of one arm "
                                "(null: none)")  # null: no fixed-λ front
    # The sections of phases added at run time (study.phases.registry.register_phase), by phase name; each phase
    # validates its own (study.check runs the checks).
    phases: dict[str, dict[str, Any]] = Field({}, description="phase name -> the section of a phase added at run time "
                                              "(study.phases.registry.register_phase), which that phase validates")

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

    def arm_kind(self, label: str) -> Any:
        """The arm kind an arm's trials train: its config's ``arm.kind`` over the base's (diffctl's default is
        ``fixed``), read without building a trial config."""
        kind = "fixed"
        for part in (self.base.get("arm"), self.arms[label].config.get("arm")):
            if isinstance(part, dict) and "kind" in part:
                kind = part["kind"]
        return kind

    def reference_arm(self) -> str | None:
        """The arm every other arm is compared with, by the one rule the study and the analysis share: the spec's
        ``reference``, else the first arm (spec order) not searched by PBT whose config trains ``arm.kind: fixed``
        (a PBT arm's members train the fixed arm, but PBT moves their weights). None when there is neither (the
        checks refuse such a spec; a study saved before ``reference`` existed may have none)."""
        if self.reference is not None:
            return self.reference
        return next((label for label, arm in self.arms.items()
                     if not arm.is_pbt and self.arm_kind(label) == "fixed"), None)
