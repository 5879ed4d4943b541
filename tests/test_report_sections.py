"""A report section added at run time, without editing the project: registered after an existing section of the
shared tiny study's report (analysed again, no training), its heading follows that section's, its
table is written under tables/ with the counts pandas reads off trials.parquet, and once it is taken out again
the report and tables are the ones the study gets without it. A registration never outlives its test."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest

from analysis import report
from analysis.cli import analyze
from analysis.load import StudyTables
from analysis.sections import SECTIONS, Computed, Section, register_section, section, unregister_section
from analysis.sections.text import link, markdown_table

ANCHOR = "collapse"  # the new section goes right after "Controller collapse"
ORIGINAL = [s.key for s in SECTIONS]
TITLE = "Trials per phase"


class TrialsPerPhase(Section):
    """How many trials ran in each phase: one table, one line of text."""

    def __init__(self, key: str = "trials_per_phase", tables: tuple[str, ...] = ("trials_per_phase",)):
        super().__init__(key, TITLE, tables=tables)

    def compute(self, study: StudyTables, computed: Computed) -> dict[str, pd.DataFrame]:
        counts = study.trials.groupby("phase", sort=True).size()
        return {"trials_per_phase": pd.DataFrame({"phase": counts.index, "trials": counts.to_numpy()})}

    def render(self, study: StudyTables, computed: Computed) -> str:
        table = computed["trials_per_phase"]
        return (f"{int(table['trials'].sum())} trials in {len(table)} phases. {link('trials_per_phase')}\n\n"
                + markdown_table(table))


@contextmanager
def restored_registry() -> Iterator[None]:
    """Whatever a block registers or takes out, the registry is as it was after it."""
    saved = list(SECTIONS)
    try:
        yield
    finally:
        SECTIONS[:] = saved


@pytest.fixture(autouse=True)
def _registry_restored():
    with restored_registry():
        yield


def _analysed_copy(source: Path, root: Path) -> Path:
    study = Path(shutil.copytree(source, root / source.name))
    analyze(study)
    return study


@pytest.fixture(scope="module")
def with_section(tiny_study, tmp_path_factory) -> Path:
    """A copy of the tiny study analysed with the section registered after ``ANCHOR``."""
    with restored_registry():
        register_section(TrialsPerPhase(), after=ANCHOR)
        return _analysed_copy(tiny_study, tmp_path_factory.mktemp("with-section"))


@pytest.fixture(scope="module")
def without_section(with_section, tiny_study, tmp_path_factory) -> Path:
    """A copy analysed after the registration above was undone."""
    return _analysed_copy(tiny_study, tmp_path_factory.mktemp("without-section"))


def _headings(text: str) -> list[str]:
    return re.findall(r"^## (.+)$", text, flags=re.MULTILINE)


def _undated(text: str) -> str:
    """The report without the line that says where and when it was analysed."""
    return re.sub(r"^Directory `[^`]*` · analysed .*$", "", text, count=1, flags=re.MULTILINE)


def _without_block(text: str, title: str) -> str:
    """The report without the section headed ``title`` (its heading up to the next section's)."""
    return re.sub(rf"^## {re.escape(title)}\n.*?(?=^## )", "", text, count=1, flags=re.MULTILINE | re.DOTALL)


def test_the_section_is_rendered_right_after_the_one_it_was_registered_after(with_section):
    headings = _headings((with_section / report.REPORT_FILE).read_text(encoding="utf-8"))
    after = headings.index(section(ANCHOR).title)
    assert headings[after + 1] == TITLE
    assert headings.count(TITLE) == 1


def test_its_table_is_written_with_the_trials_of_each_phase(with_section):
    written = pd.read_csv(with_section / "tables" / "trials_per_phase.csv")
    trials = pd.read_parquet(with_section / "trials.parquet")
    expected = trials["phase"].value_counts()
    assert set(written["phase"]) == set(expected.index) and len(written) == len(expected)
    assert dict(zip(written["phase"], written["trials"])) == expected.to_dict()
    text = (with_section / report.REPORT_FILE).read_text(encoding="utf-8")
    line = f"{len(trials)} trials in {len(expected)} phases. [trials_per_phase.csv](tables/trials_per_phase.csv)"
    assert line in text


def test_taken_out_again_the_report_is_the_one_without_it(with_section, without_section):
    assert [s.key for s in SECTIONS] == ORIGINAL
    alone = (without_section / report.REPORT_FILE).read_text(encoding="utf-8")
    added = (with_section / report.REPORT_FILE).read_text(encoding="utf-8")
    assert TITLE not in _headings(alone) and len(_headings(alone)) == len(_headings(added)) - 1
    assert _undated(_without_block(added, TITLE)) == _undated(alone)
    tables = {p.name: p.read_bytes() for p in (without_section / "tables").glob("*.csv")}
    assert {p.name: p.read_bytes() for p in (with_section / "tables").glob("*.csv")
            if p.name != "trials_per_phase.csv"} == tables
    assert "trials_per_phase.csv" not in tables


def test_registered_sections_are_taken_out_by_key_and_never_outlive_their_test():
    register_section(TrialsPerPhase())  # no anchor: last
    assert SECTIONS[-1].key == "trials_per_phase"
    assert isinstance(unregister_section("trials_per_phase"), TrialsPerPhase)
    register_section(TrialsPerPhase(), after="header")
    assert [s.key for s in SECTIONS][:2] == ["header", "trials_per_phase"]  # the fixture takes it out again


def test_the_registration_above_left_nothing_behind():
    assert [s.key for s in SECTIONS] == ORIGINAL


def test_a_bad_registration_is_refused_in_one_line():
    listed = re.escape("no report section `nowhere` (registered: header, conclusions,")
    with pytest.raises(ValueError, match=listed) as unknown:
        register_section(TrialsPerPhase(), after="nowhere")
    register_section(TrialsPerPhase(), after=ANCHOR)
    with pytest.raises(ValueError, match="a report section `trials_per_phase` is already registered") as twice:
        register_section(TrialsPerPhase(), after=ANCHOR)
    assert "\n" not in str(unknown.value) + str(twice.value)


def test_a_section_that_would_overwrite_another_sections_table_is_refused():
    with pytest.raises(ValueError, match=r"frame name\(s\) cost already computed by `cost`"):
        register_section(TrialsPerPhase("clash", tables=("cost",)), after=ANCHOR)
    assert [s.key for s in SECTIONS] == ORIGINAL
