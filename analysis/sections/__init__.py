"""The sections of report.md, in report order (:data:`SECTIONS`): one module each, holding the tables it computes
and the Markdown that shows them (the interface: ``analysis.sections.base``; the shared Markdown helpers:
``analysis.sections.text``). No section imports another: one reads another's tables by name.

A section is added at run time with :func:`register_section` and taken out with :func:`unregister_section`;
``analysis.report`` computes and renders whatever :data:`SECTIONS` holds when it runs.

Example::

    from analysis.sections import SECTIONS, Section, register_section

    class TrialCount(Section):
        def render(self, study, computed):
            return f"{len(study.trials)} trials."

    register_section(TrialCount("trial_count", "Trial count"), after="collapse")  # right after "Controller collapse"
    [s.key for s in SECTIONS]
"""

from __future__ import annotations

from . import (
    collapse, conclusions, confirm, cost, data, epochs, fairness, header, pbt, plots, quality, questions, reference,
    search, trajectory, tuning,
)
from .base import Computed, Section

SECTIONS: list[Section] = [
    header.SECTION,
    conclusions.SECTION,
    cost.SECTION,
    fairness.SECTION,
    tuning.SECTION,
    search.SECTION,
    confirm.SECTION,
    reference.SECTION,
    trajectory.SECTION,
    pbt.SECTION,
    epochs.SECTION,
    quality.SECTION,
    collapse.SECTION,
    questions.SECTION,
    plots.SECTION,
    data.SECTION,
]


def section(key: str) -> Section:
    """The registered section named ``key``; a ValueError that lists the keys when there is none."""
    for registered in SECTIONS:
        if registered.key == key:
            return registered
    raise ValueError(f"no report section `{key}` (registered: {', '.join(s.key for s in SECTIONS)})")


def register_section(new: Section, after: str | None = None) -> None:
    """Add ``new`` to the report right after the section keyed ``after`` (None: last). Its key and frame names
    must be new to the report."""
    if any(s.key == new.key for s in SECTIONS):
        raise ValueError(f"a report section `{new.key}` is already registered")
    taken = {name: s.key for s in SECTIONS for name in s.names()}
    if clash := [name for name in new.names() if name in taken]:
        raise ValueError(f"report section `{new.key}`: frame name(s) {', '.join(clash)} already computed by "
                         + ", ".join(sorted({f'`{taken[name]}`' for name in clash})))
    place = len(SECTIONS) if after is None else SECTIONS.index(section(after)) + 1
    SECTIONS.insert(place, new)


def unregister_section(key: str) -> Section:
    """Take the section keyed ``key`` out of the report and return it."""
    removed = section(key)
    SECTIONS.remove(removed)
    return removed


__all__ = ["SECTIONS", "Computed", "Section", "register_section", "section", "unregister_section"]
