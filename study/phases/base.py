"""The one shape of a phase, and of an arm's search, and the typed request a phase hands to a trial.

A **phase** (:class:`Phase`) is everything the study knows about one kind of run: the places it runs (one per arm
label, :class:`Place`, each waiting for the places it is made from), the most trials each place can run, the runs
it plans once the places it waits for have ended (:meth:`Phase.plan`), what its runs record in ``trial.json``,
whether they evaluate the held-out test split, how a run's diffctl config is made from its request, and what it
does after its trials have ended (:meth:`Phase.finish`: close what a kill left open, remove what the study does not
keep). The runner, the searcher, the trainable, ``study status`` and ``study check`` go through the phases of
``study.phases.registry`` and name none of them.

The ``search`` phase (:class:`SearchPhase`) runs each arm through the **search method** its spec names
(``search: optuna | pbt``), one :class:`SearchMethod` each (``study.phases.search``: Optuna's TPE asked in batches inside the study's Tuner;
``study.phases.pbt``: a population in Tuners of its own, before it). A phase that needs to know how an arm was
searched (its confirmation replays a population's schedule, say) asks :func:`search_method`, never the arm's
search.

A **trial request** (:class:`TrialRequest`) is what a phase asks Ray to run: it travels as the Ray trial's config
(:meth:`TrialRequest.ray_config`), the trainable reads it back (:meth:`TrialRequest.from_config`), and the keys of
its phase (:attr:`Phase.record_keys`) go into ``trial.json``.

Example::

    phase = registry.phase("confirm")
    [p.label for p in phase.places(spec)]            # every arm
    phase.plan(spec, study_dir, place).runs[0]       # a TrialRequest
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from ..protocol.configs import trial_config
from ..protocol.errors import SpecError, validation_line
from ..protocol.plan import STILL_KINDS
from ..protocol.schema import StudySpec

# trial.json keys only some phases record (study.trialdir.TrialInfo); a phase names those it records.
SEARCH_KEYS = frozenset({"sampling", "batch", "slot"})
SOURCE_KEYS = frozenset({"source_trial", "source_feasible"})
DISTILL_KEYS = SOURCE_KEYS | {"source_arm", "distill", "distilled"}
OPTION_KEYS = SOURCE_KEYS | {"source_arm", "ablate_axis", "ablate_option", "overrides"}


class TrialRequest(BaseModel):
    """One run a phase asks for: where it belongs (phase, arm label, name), what it trains (the spec arm's config,
    ``params``, ``overrides``, an arm section of its own, the seed) and what it is made from (its source)."""

    model_config = ConfigDict(extra="forbid")

    phase: str
    arm: str  # the label it is recorded under (``<study>/<phase>/<arm>/<name>/``)
    name: str | None = None  # None only for a PBT member, which its scheduler names (study.phases.pbt)
    params: dict[str, Any] = {}
    seed: int | None = None  # None: the spec's base seed (the search seed)
    replicate: int | None = None
    # a search trial: how its params were drawn, its batch and slot in its replicate's search
    sampling: str | None = None
    batch: int | None = None
    slot: int | None = None
    member: int | None = None  # a PBT member: its index in the population
    # a planned run: the trial it is made from, and whether that one was feasible
    source_trial: str | None = None
    source_feasible: bool | None = None
    source_arm: str | None = None  # the spec arm whose config it trains, when its label is not one
    arm_config: dict[str, Any] | None = None  # an arm section replacing the arm's (a distilled run, a schedule)
    distill: str | None = None  # a distilled run's variant
    ablate_axis: str | None = None  # an ablation or retune run's question and option
    ablate_option: str | None = None
    overrides: dict[str, Any] | None = None  # flat config keys applied over the source arm's config and params

    def ray_config(self) -> dict[str, Any]:
        """The Ray trial config carrying this request (the keys it sets)."""
        return self.model_dump(mode="json", exclude_none=True)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TrialRequest:
        return cls.model_validate(config)

    @property
    def trains(self) -> str:
        """The spec arm whose config the run trains."""
        return self.source_arm or self.arm


@dataclass(frozen=True)
class Place:
    """One phase of one arm label: the spec arm it is made from (``source``) and the places it waits for
    (``after``: (phase, label) pairs; () waits for nothing)."""

    phase: str
    label: str
    source: str
    after: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> tuple[str, str]:
        return self.phase, self.label


@dataclass
class Planned:
    """What a phase plans for one place once the places it waits for have ended: its runs, and one line for each
    thing worth saying about the plan (an arm with nothing to confirm, an ablation option that runs nothing)."""

    runs: list[TrialRequest] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class Phase(ABC):
    """A kind of run of the study (see the module docstring). Subclasses set :attr:`name` and implement
    :meth:`places` and :meth:`bound`; a planned phase implements :meth:`plan`."""

    name: ClassVar[str]
    # a phase added at run time reads its section from the spec's ``phases: {<name>: {...}}`` (this model
    # validates it; None: it has none). The built-in phases read sections of the spec's own schema.
    section: ClassVar[type[BaseModel] | None] = None
    test_split: ClassVar[bool] = False  # its runs evaluate the held-out test split: a reader quotes them
    record_keys: ClassVar[frozenset[str]] = SOURCE_KEYS  # the phase-specific keys its runs record in trial.json
    # its places' runs are planned in one go (:meth:`plan`): a place that is done ran what it planned, which can
    # be fewer than its bound (a search runs its budget, asked as results come in)
    plans: ClassVar[bool] = True

    def options(self, spec: StudySpec) -> BaseModel | None:
        """Its section of the spec's ``phases``, validated (None: the spec has none for it)."""
        data = spec.phases.get(self.name)
        return None if data is None or self.section is None else self.section.model_validate(data)

    def check(self, spec: StudySpec) -> None:
        """Refuse a spec the phase cannot run, with one line naming the key (``study run`` and ``study check``):
        by default, a section that its model refuses, or one given to a phase that reads none."""
        data = spec.phases.get(self.name)
        if data is None:
            return
        where = f"phases.{self.name}"
        if self.section is None:
            raise SpecError(f"{where}: the {self.name} phase reads no section of the spec")
        try:
            self.section.model_validate(data)
        except ValidationError as exc:
            raise SpecError(validation_line(exc, where, self.section, section=True)) from None

    @abstractmethod
    def places(self, spec: StudySpec) -> list[Place]:
        """Every place of the phase in the spec, in the order they run (none when its spec section is absent)."""

    @abstractmethod
    def bound(self, spec: StudySpec, place: Place) -> int:
        """The most trials one place can run."""

    def plan(self, spec: StudySpec, study_dir: Path, place: Place) -> Planned:
        """The runs of one place, once every place it waits for has ended."""
        raise NotImplementedError(f"the {self.name} phase plans no runs")

    def trial_config(self, spec: StudySpec, request: TrialRequest) -> dict[str, Any]:
        """The diffctl config (as a dict) a run trains: its spec arm's config with its params, overrides and seed,
        its arm section replaced when it brings one."""
        data = trial_config(spec, request.trains, request.params, request.seed, request.overrides)
        if request.arm_config is not None:
            data["arm"] = dict(request.arm_config)
        return data

    def state_store(self, spec: StudySpec, trial_dir: Path, request: TrialRequest) -> Any:
        """Where a run keeps its state between epochs and how it reports (None: its own ``trainer.pt``)."""
        return None

    def searches(self, spec: StudySpec, place: Place, storage: Any) -> list[Any]:
        """The searches the study's searcher asks for this place's runs as results come in (each with
        ``next_run``, ``on_result``, ``complete``, ``ended`` and ``reconcile``, like ``study.phases.search``'s);
        none for a place whose runs are planned in one go or ran before the study's Tuner."""
        return []

    def scheduler(self, spec: StudySpec, study_dir: Path) -> Any:
        """A Tune scheduler the study's Tuner needs for this phase's runs (early stopping), or None."""
        return None

    def ran_before(self, spec: StudySpec, place: Place) -> bool:
        """Whether the place ran in Tuners of its own before the study's Tuner (:meth:`run_before`)."""
        return False

    def run_before(self, job: Any, place: Place, tuners: Any) -> None:
        """Run the place in Tuners of its own before the study's Tuner, when :meth:`ran_before` (``job``:
        ``study.trainable.TrialJob``; ``tuners``: ``study.tuners``, handed in by the runner: a phase imports neither,
        since both import the phases)."""

    def finish(self, spec: StudySpec, study_dir: Path, places: list[Place]) -> None:
        """After the study's Tuners: close or remove what the phase's trials left (nothing by default)."""

    def interrupted(self, spec: StudySpec, study_dir: Path, place: Place) -> bool:
        """Whether a Tuner that ended left this place short of runs it should have started (a search whose
        budget is not spent): the study was interrupted."""
        return False


class SearchMethod(ABC):
    """How one arm is searched (the spec arm's ``search``): the ``search`` phase's runs of that arm."""

    kind: ClassVar[str]  # the spec's ``search`` value
    # its pick is a configuration of constants, which a point of the fixed-λ front can stand beside (a
    # population's pick is a schedule)
    picks_constants: ClassVar[bool] = True
    # whether its trials are asked inside the study's Tuner as results come in (else it ran in Tuners of its own)
    in_study_tuner: ClassVar[bool] = True

    def bound(self, spec: StudySpec, arm: str) -> int:
        """The most search trials of the arm (every replicate)."""
        return spec.arms[arm].budget * spec.search_replicates

    def searches(self, spec: StudySpec, arm: str, storage: Any) -> list[Any]:
        """The replicate searches the study's searcher asks for trials (see :meth:`Phase.searches`): none for a
        search that runs before the study's Tuner."""
        return []

    def run_before(self, job: Any, arm: str, tuners: Any) -> None:
        """Run the arm's search before the study's Tuner, when not :attr:`in_study_tuner` (see
        :meth:`Phase.run_before`)."""

    def scheduler(self, spec: StudySpec, study_dir: Path) -> Any:
        """The Tune scheduler its trials need in the study's Tuner (one for every arm of the method), or None."""
        return None

    def state_store(self, spec: StudySpec, trial_dir: Path, request: TrialRequest) -> Any:
        return None

    def finish(self, spec: StudySpec, study_dir: Path, arm: str) -> None:
        """After the study's Tuners (close open Optuna trials, remove checkpoints)."""

    def interrupted(self, spec: StudySpec, study_dir: Path, arm: str) -> bool:
        return False

    def prunes(self, spec: StudySpec) -> bool:
        """Whether early stopping stops some of its trials (the pruning audit trains them to the end)."""
        return False

    def moves(self, spec: StudySpec, arm: str) -> bool:
        """Whether the arm's weights or rho can move during a run (its confirmation runs can be distilled)."""
        return spec.arm_kind(arm) not in STILL_KINDS

    def confirm_top_k(self, spec: StudySpec) -> int:
        """How many configurations of each replicate its confirmation runs."""
        return spec.confirm.top_k

    def replay(self, spec: StudySpec, study_dir: Path, arm: str, replicate: int) -> dict[str, Any] | None:
        """The arm section a confirmation run of the replicate trains instead of its picked params' (a schedule);
        None: the pick's own. Raises FileNotFoundError when the replicate has nothing to replay."""
        return None

    def distill_variants(self, spec: StudySpec) -> list[str]:
        """The distilled baselines of the arm's confirmation runs (``confirm.distill``)."""
        return list(spec.confirm.distill)


_SEARCH_METHODS: dict[str, SearchMethod] = {}


def register_search_method(method: SearchMethod) -> SearchMethod:
    _SEARCH_METHODS[method.kind] = method
    return method


def search_method(spec: StudySpec, arm: str) -> SearchMethod:
    """How the spec's arm is searched (``study.phases.registry`` registers the built-in two)."""
    return _SEARCH_METHODS[spec.arms[arm].search]


def confirm_runs(spec: StudySpec, arm: str) -> int:
    """Upper bound of an arm's confirmation runs (and of each of its distilled baselines): its top configurations
    x seeds per replicate (fewer when fewer search trials qualify)."""
    return search_method(spec, arm).confirm_top_k(spec) * len(spec.confirm.seeds) * spec.search_replicates


class SearchPhase(Phase):
    """The ``search`` phase: every spec arm, searched by its own method (:class:`SearchMethod`)."""

    name = "search"
    record_keys = SEARCH_KEYS
    plans = False

    def places(self, spec: StudySpec) -> list[Place]:
        return [Place(self.name, arm, arm) for arm in spec.arms]

    def bound(self, spec: StudySpec, place: Place) -> int:
        return search_method(spec, place.label).bound(spec, place.label)

    def state_store(self, spec: StudySpec, trial_dir: Path, request: TrialRequest) -> Any:
        return search_method(spec, request.arm).state_store(spec, trial_dir, request)

    def searches(self, spec: StudySpec, place: Place, storage: Any) -> list[Any]:
        return search_method(spec, place.label).searches(spec, place.label, storage)

    def ran_before(self, spec: StudySpec, place: Place) -> bool:
        return not search_method(spec, place.label).in_study_tuner

    def run_before(self, job: Any, place: Place, tuners: Any) -> None:
        search_method(job.spec, place.label).run_before(job, place.label, tuners)

    def scheduler(self, spec: StudySpec, study_dir: Path) -> Any:
        methods = {id(m): m for m in (search_method(spec, arm) for arm in spec.arms)}.values()
        return next((s for m in methods if (s := m.scheduler(spec, study_dir)) is not None), None)

    def finish(self, spec: StudySpec, study_dir: Path, places: list[Place]) -> None:
        for place in places:
            search_method(spec, place.label).finish(spec, study_dir, place.label)

    def interrupted(self, spec: StudySpec, study_dir: Path, place: Place) -> bool:
        return search_method(spec, place.label).interrupted(spec, study_dir, place.label)
