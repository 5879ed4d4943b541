"""Every figure README's "What the study found" quotes is its table's value at the precision quoted.

Convention (README.md states it): a quoted figure is a link to the table it comes from, with the row and the
column in the fragment — ``[−0.0181](results/open-questions/tables/conclusions.csv#arm=controller&col=diff)``:
the rows where every ``key=value`` holds (one row, else the link is refused), the value of ``col``. The figure
must equal that value rounded to the decimals it shows (a count or a verdict must equal it exactly).
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qsl

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\[([^\]]+)\]\((results/[^)#]+\.csv)#([^)]+)\)")
MIN_FIGURES = 20  # the section quotes the answer's numbers, not a handful


def found_section(text: str) -> str:
    start = text.index("## What the study found")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def cell(table: pd.DataFrame, fragment: str, where: str):
    """The value a link's fragment names in ``table``."""
    query = dict(parse_qsl(fragment, keep_blank_values=True))
    column = query.pop("col", None)
    assert column in table, f"{where}: no column {column!r}"
    rows = table
    for key, value in query.items():
        assert key in rows, f"{where}: no column {key!r}"
        rows = rows[rows[key].astype(str) == value]
    assert len(rows) == 1, f"{where}: {len(rows)} rows match {query}"
    return rows[column].iloc[0]


def matches(quoted: str, value) -> bool:
    """Whether a quoted figure is ``value`` at the quoted precision (a word must be equal)."""
    text = quoted.strip().replace("−", "-").replace("+", "").rstrip("%")
    try:
        number = float(text)
    except ValueError:
        return str(value) == quoted.strip()
    decimals = len(text.split(".")[1]) if "." in text else 0
    scale = 100 if quoted.strip().endswith("%") else 1
    return abs(float(value) * scale - number) <= 0.5 * 10 ** -decimals + 1e-12


def test_matches_by_hand():
    assert matches("−0.0181", -0.01812) and matches("+0.049", 0.04871) and not matches("0.0181", 0.0183)
    assert matches("12", 12) and not matches("12", 11) and matches("worse", "worse") and matches("96.4%", 0.9641)


@pytest.mark.skipif(not (ROOT / "results" / "open-questions" / "tables").is_dir(), reason="no published study")
def test_every_quoted_figure_is_its_tables_value():
    section = found_section((ROOT / "README.md").read_text(encoding="utf-8"))
    links = LINK.findall(section)
    assert len(links) >= MIN_FIGURES, f"only {len(links)} linked figures in README's findings"
    tables: dict[str, pd.DataFrame] = {}
    wrong = []
    for quoted, path, fragment in links:
        table = tables.setdefault(path, pd.read_csv(ROOT / path))
        value = cell(table, fragment, f"{path}#{fragment}")
        if not matches(quoted, value):
            wrong.append(f"README quotes {quoted} for {path}#{fragment}, the table holds {value}")
    assert not wrong, "\n".join(wrong)
