"""Scheduling of the suite over pytest-xdist workers (``make test`` runs it with ``-n 2``).

Every test goes to the worker of its group: its module, so that a module's fixtures (most of them a real study)
are built once, or the group of a study that several modules share, so that that study is built once per session
and not once per worker. The groups start in collection order, which puts the modules marked ``slow`` (the studies)
first, so that the short unit tests fill the end of the run. Without xdist nothing here changes a test.

(xdist's own ``--dist loadgroup`` cannot be used: it renames test ids, which pytest 9 no longer allows.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

# Modules that read one study built once per test session: they must run on one worker.
SHARED = {
    # tests/study_fixture.py: the tiny study
    "test_analysis": "tiny study",
    "test_dashboard": "tiny study",
    "test_export": "tiny study",
    "test_hostile_study_input": "tiny study",
    "test_runner": "tiny study",
    "test_verdicts": "tiny study",
    # tests/derived_study.py: the distill and ablation study
    "test_distill": "derived study",
    "test_ablate": "derived study",
}


def group_of(nodeid: str) -> str:
    """The worker group of a test id: its module's shared study, else its module."""
    module = nodeid.split("::", 1)[0]
    return SHARED.get(Path(module).stem, module)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: the studies first


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    from xdist.scheduler import LoadScopeScheduling

    class StudyGroups(LoadScopeScheduling):
        """xdist's per-module scheduling with the groups above as its scopes, in collection order."""

        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid)

    config.option.loadscopereorder = False
    return StudyGroups(config, log)
