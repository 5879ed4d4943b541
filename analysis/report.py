"""report.md and tables/*.csv of a study directory: the sections of ``analysis.sections``, in their order, each
with the tables it computes and the Markdown that shows them.

Every file is written atomically. The report links each CSV it summarises so that the numbers can be taken
further in pandas (``pd.read_csv``) or from trials.parquet / epochs.parquet.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from diffctl.files import atomic_write_text

from . import sections as registry
from .load import StudyTables
from .sections.base import Computed, Section
from .sections.text import TABLES_DIR

REPORT_FILE = "report.md"


def _sections(sections: Sequence[Section] | None) -> list[Section]:
    return list(registry.SECTIONS if sections is None else sections)


def compute(tables: StudyTables, sections: Sequence[Section] | None = None) -> Computed:
    """Every frame of every section (the registered ones unless ``sections`` names others); plots are drawn."""
    return Computed(tables, _sections(sections)).compute_all()


def render(tables: StudyTables, computed: Computed, sections: Sequence[Section] | None = None) -> str:
    """The text of report.md: each section under its ``## `` heading, one blank line between sections."""
    parts = []
    for section in _sections(sections):
        text = section.render(tables, computed)
        text = text if text.endswith("\n") else text + "\n"
        parts.append(text if section.title is None else f"## {section.title}\n\n{text}")
    return "\n".join(parts)


def write_tables(study_dir: Path, computed: Computed) -> dict[str, Path]:
    """Write every section's tables as ``tables/<name>.csv``."""
    out = study_dir / TABLES_DIR
    out.mkdir(exist_ok=True)
    paths = {}
    for name, frame in computed.written().items():
        paths[name] = out / f"{name}.csv"
        atomic_write_text(paths[name], frame.to_csv(index=False))
    return paths


def write_report(tables: StudyTables, computed: Computed, sections: Sequence[Section] | None = None) -> Path:
    """Write tables/*.csv and report.md; return the report's path."""
    write_tables(tables.study_dir, computed)
    path = tables.study_dir / REPORT_FILE
    atomic_write_text(path, render(tables, computed, sections))
    return path
