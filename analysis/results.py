"""A study's results as one object, live or published: the entry point for working with them in Python, in the
spirit of Ray Tune's ``ResultGrid``.

A *live* study directory holds the trial directories a study wrote (``<phase>/<arm>/<name>/``); a *published*
one holds only what ``results/<name>/`` commits — ``spec.yaml``, ``trials.parquet``, ``epochs.parquet``, the
report, tables and plots, the exported configuration, ``ablate.json`` and ``optuna.journal``. Both read the same
way; nothing here needs Ray.

Example::

    from analysis import open_study

    results = open_study("results/open-questions")
    results.trials.query("phase == 'confirm'").groupby("arm")["final_triplet_r_A"].mean()
    results.verdicts()            # every arm against the reference arm at the whole run, one row per metric
    results.winner                # ("controller", "Winner: ...") or (None, "No winner: ...")
    results.runs("fixed")         # the runs that represent an arm on the confirmation seeds
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd

from study.protocol import StudySpec

from .compare import full_budget, paired_vs_fixed, winner
from .load import StudyTables, build_tables
from .runs import winner_runs


@dataclass
class StudyResults:
    """The tables, the spec and the verdicts of one study directory (see the module docstring)."""

    tables: StudyTables

    @property
    def study_dir(self) -> Path:
        return self.tables.study_dir

    @property
    def spec(self) -> StudySpec:
        return self.tables.spec

    @property
    def trials(self) -> pd.DataFrame:
        """One row per trial of every phase (``analysis.load``)."""
        return self.tables.trials

    @property
    def epochs(self) -> pd.DataFrame:
        """One row per trial and epoch, every field of the record."""
        return self.tables.epochs

    @property
    def published(self) -> bool:
        """Read from a published study's Parquet tables (no trial directories)."""
        return self.tables.published

    @cached_property
    def paired(self) -> pd.DataFrame:
        """Every arm against the reference arm (``reference``, else the fixed-λ arm), at every budget and on every
        compared metric."""
        return paired_vs_fixed(self.tables)

    def verdicts(self) -> pd.DataFrame:
        """The comparisons at the whole run: difference, interval, Holm-corrected p, P(A beats B), verdict."""
        return full_budget(self.paired).reset_index(drop=True)

    @property
    def winner(self) -> tuple[str | None, str]:
        """The arm that beats the reference arm by the ranking rule (or None), and the sentence that says so."""
        return winner(self.tables, self.paired)

    def runs(self, arm: str) -> pd.DataFrame:
        """The runs that represent ``arm`` on the confirmation seeds (every replicate)."""
        return winner_runs(self.tables, arm)


def open_study(study_dir: str | Path) -> StudyResults:
    """The results of a live or published study directory; bad input raises
    :class:`~diffctl.errors.InputError` naming the directory or file."""
    return StudyResults(build_tables(study_dir))
