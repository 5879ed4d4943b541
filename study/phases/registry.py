"""The phases a study runs, in the order their places are asked for, and the two search methods of the ``search``
phase. A phase of one's own (a :class:`~study.phases.base.Phase`) is added at run time with
:func:`register_phase`; the runner, the searcher, the trainable, ``study status`` and ``study check`` then run it
like the built-in ones. A phase registered here exists in the process that registered it; a study's trials get
it with the study's job (``study.trainable.TrialJob.phases``, pickled to Ray's workers by value when its module
is registered with ``cloudpickle.register_pickle_by_value``).

Example::

    places = PhasePlaces(phases(), spec)
    [(p.phase, p.label) for p in places.places()][:2]    # [("search", "fixed"), ("search", "barrier")]
    places.bound(places.places()[0])                     # the most trials of fixed's search
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from diffctl.suggest import closest_key

from ..protocol.errors import SpecError
from ..protocol.schema import StudySpec
from . import ablate, audit, confirm, distill, front, pbt, retune, search
from .base import Phase, Place, SearchPhase, register_search_method

register_search_method(search.METHOD)
register_search_method(pbt.METHOD)
_BUILT_IN: list[Phase] = [SearchPhase(), front.PHASE, confirm.PHASE, audit.PHASE, distill.PHASE, retune.PHASE,
                          ablate.PHASE]
_PHASES: list[Phase] = list(_BUILT_IN)


def phases() -> list[Phase]:
    """Every phase, in the order the searcher asks for their places."""
    return list(_PHASES)


def phase(name: str) -> Phase:
    return next(p for p in _PHASES if p.name == name)


def register_phase(new: Phase, after: str | None = None) -> None:
    """Add a phase: right after the phase named ``after`` (default: last)."""
    if any(p.name == new.name for p in _PHASES):
        raise ValueError(f"{new.name!r}: a phase of that name exists")
    index = len(_PHASES) if after is None else [p.name for p in _PHASES].index(after) + 1
    _PHASES.insert(index, new)


def unregister_phase(name: str) -> None:
    """Remove a phase :func:`register_phase` added (a test's cleanup)."""
    if any(p.name == name for p in _BUILT_IN):
        raise ValueError(f"{name!r}: a built-in phase")
    _PHASES[:] = [p for p in _PHASES if p.name != name]


class PhasePlaces:
    """The places of a spec, each with its phase: what the runner, the searcher and the counts go through."""

    def __init__(self, phases: list[Phase], spec: StudySpec) -> None:
        self.phases, self.spec = list(phases), spec
        self._pairs = [(phase, place) for phase in self.phases for place in phase.places(spec)]

    def __iter__(self):
        return iter(self._pairs)

    def places(self) -> list[Place]:
        return [place for _, place in self._pairs]

    def of(self, phase: Phase) -> list[Place]:
        return [place for owner, place in self._pairs if owner is phase]

    def phase(self, name: str) -> Phase:
        return next(p for p in self.phases if p.name == name)

    def bound(self, place: Place) -> int:
        """The most trials one place can run."""
        return self.phase(place.phase).bound(self.spec, place)

    def total(self) -> int:
        """The most trials the whole study can run."""
        return sum(self.bound(place) for place in self.places())

    def before_tuner(self) -> list[tuple[Phase, Place]]:
        """The places that run in Tuners of their own before the study's Tuner."""
        return [(phase, place) for phase, place in self._pairs if phase.ran_before(self.spec, place)]

    def in_tuner(self) -> list[tuple[Phase, Place]]:
        """The places whose runs the study's Tuner runs."""
        return [(phase, place) for phase, place in self._pairs if not phase.ran_before(self.spec, place)]

    def short_of_runs(self, study_dir: Path) -> Callable[[Place], bool]:
        """Whether a place is short of the runs its phase should have started once the study's Tuner ended."""
        return lambda place: self.phase(place.phase).interrupted(self.spec, study_dir, place)

    def scheduler(self, study_dir: Path) -> Any:
        """The Tune scheduler of the study's Tuner: the first a phase brings (early stopping of the searches), or
        None (first in, first out)."""
        return next((s for p in self.phases if (s := p.scheduler(self.spec, study_dir)) is not None), None)


def check_phases(spec: StudySpec) -> None:
    """Refuse a spec whose ``phases`` section names a phase not registered, or one its phase refuses (one line
    naming the key)."""
    names = [p.name for p in _PHASES]
    for name in spec.phases:
        if name not in names:
            close = closest_key(name, names)
            hint = f"did you mean {close!r}? " if close else ""
            raise SpecError(f"phases.{name}: no such phase ({hint}known: {', '.join(names)})")
    for each in _PHASES:
        each.check(spec)


def phase_places(spec: StudySpec) -> list[tuple[str, str]]:
    """(phase, arm label) of every place of every phase, in the order they are asked for."""
    return [place.key for place in PhasePlaces(phases(), spec).places()]


def place_bound(spec: StudySpec, phase_name: str, label: str) -> int:
    places = PhasePlaces(phases(), spec)
    return places.bound(next(p for p in places.places() if p.key == (phase_name, label)))


def place_of(spec: StudySpec, phase_name: str, label: str) -> Place:
    return next(p for p in PhasePlaces(phases(), spec).places() if p.key == (phase_name, label))


def total_trials(spec: StudySpec) -> int:
    return PhasePlaces(phases(), spec).total()
