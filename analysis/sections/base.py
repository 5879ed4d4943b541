"""What a section of report.md is (:class:`Section`) and the store of what the sections computed
(:class:`Computed`).

A section owns its part of the report: the tables it computes (``tables``, each written as
``tables/<name>.csv``), the frames it computes only for its text (``kept``, not written), and its text under its
``## title`` heading (:meth:`Section.render`). Sections read each other's tables by name from :class:`Computed`,
never by importing each other: a section's :meth:`Section.compute` runs once, when the report or another
section first asks for one of its tables.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping

import pandas as pd

from ..load import StudyTables


class Section(ABC):
    """One part of report.md: what it computes and the Markdown that shows it.

    ``key`` names it in the registry (``analysis.sections.register_section(section, after=key)``); ``title`` is
    its ``## `` heading (None: no heading, the report's opening lines); ``tables`` names, in order, the tables
    :meth:`compute` returns that are written as ``tables/<name>.csv``; ``kept`` the frames it returns for its
    text only. Every name is the section's own: no two sections of a report share one.
    """

    def __init__(self, key: str, title: str | None = None, tables: tuple[str, ...] = (), kept: tuple[str, ...] = ()):
        self.key, self.title, self.tables, self.kept = key, title, tuple(tables), tuple(kept)

    def compute(self, study: StudyTables, computed: Computed) -> dict[str, pd.DataFrame]:
        """Every frame named in ``tables`` and ``kept``, from the study and the other sections' tables
        (``computed[name]``). A section that shows only the study's own tables computes nothing."""
        return {}

    @abstractmethod
    def render(self, study: StudyTables, computed: Computed) -> str:
        """The section's Markdown below its heading (the report puts one blank line after it); ``computed`` holds
        every frame of every section of the report."""

    def names(self) -> tuple[str, ...]:
        """Every frame name the section computes: its tables, then its kept frames."""
        return (*self.tables, *self.kept)


class Computed(Mapping[str, pd.DataFrame]):
    """The frames of a report's sections by name, each section's computed on first use, once.

    Asking for a name that no section computes raises ``KeyError``; a section that asks, through other sections,
    for its own frames before they exist raises ``RuntimeError`` naming the circle.
    """

    def __init__(self, study: StudyTables, sections: Iterable[Section]):
        self._study = study
        self._sections = list(sections)
        self._owner: dict[str, Section] = {}
        for section in self._sections:
            for name in section.names():
                if name in self._owner:
                    raise ValueError(f"report sections `{self._owner[name].key}` and `{section.key}` both compute "
                                     f"a frame named `{name}`")
                self._owner[name] = section
        self._frames: dict[str, pd.DataFrame] = {}
        self._running: list[str] = []

    def __getitem__(self, name: str) -> pd.DataFrame:
        if name not in self._frames:
            if name not in self._owner:
                raise KeyError(name)
            self._compute(self._owner[name])
        return self._frames[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._owner)

    def __len__(self) -> int:
        return len(self._owner)

    def _compute(self, section: Section) -> None:
        if section.key in self._running:
            circle = " -> ".join([*self._running[self._running.index(section.key):], section.key])
            raise RuntimeError(f"report sections ask for each other's tables in a circle: {circle}")
        self._running.append(section.key)
        try:
            frames = section.compute(self._study, self)
        finally:
            self._running.pop()
        if set(frames) != set(section.names()):
            raise ValueError(f"report section `{section.key}` computed {sorted(frames)}, not the frames it names "
                             f"{sorted(section.names())}")
        self._frames.update(frames)

    def compute_all(self) -> Computed:
        """Compute every section's frames (in report order, each section once); return self."""
        for section in self._sections:
            if any(name not in self._frames for name in section.names()):
                self._compute(section)
        return self

    def written(self) -> dict[str, pd.DataFrame]:
        """The tables written under ``tables/``, by name, in report order."""
        return {name: self[name] for section in self._sections for name in section.tables}
