"""README's guide to the report names every section the report writes, in the report's order, and every plot the
analysis draws (and nothing else): the list cannot drift from the report's sections (``analysis.sections.SECTIONS``)
and ``analysis/plots*.py``."""

from __future__ import annotations

import re
from pathlib import Path

from analysis.sections import SECTIONS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
GUIDE = README[README.index("Read the report top down:"):README.index("An interrupted study")]


def _sections() -> list[str]:
    """The report's top-level sections in the order the registry writes them, each by its leading words."""
    # Every `## ` heading of report.md is a section's title: no section writes one into its own text.
    for module in sorted((ROOT / "analysis" / "sections").glob("*.py")):
        assert not re.findall(r"^## ", module.read_text(encoding="utf-8"), flags=re.MULTILINE), module.name
    headings = [section.title for section in SECTIONS if section.title is not None]
    return [h.split(" (")[0].split(",")[0] for h in headings]


def _plots(text: str) -> set[str]:
    return set(re.findall(r"`?([a-z_]+(?:_<arm>)?\.png)", text))


def test_the_readme_names_every_report_section_in_the_report_order():
    sections = _sections()
    assert len(sections) >= 15 and sections[0] == "Conclusions" and sections[-1] == "Data"
    places = [GUIDE.find(f"**{name}") for name in sections]
    missing = [name for name, at in zip(sections, places) if at < 0]
    assert not missing, f"README's report guide does not name: {missing}"
    assert places == sorted(places), "README lists the report's sections in another order than the report"


def test_the_readme_names_every_plot_the_analysis_draws_and_no_other():
    drawn = set()
    for module in ("plots.py", "plots_compare.py"):
        source = (ROOT / "analysis" / module).read_text(encoding="utf-8")
        drawn |= _plots(source[: source.index('"""', 3)])  # each module's docstring lists what it draws
    plots = GUIDE[GUIDE.index("**Plots**"):GUIDE.index("**Data**")]
    assert len(drawn) >= 9 and drawn == _plots(plots)
