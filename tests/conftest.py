"""The studies several test modules share, and the scheduling of the suite over pytest-xdist workers (``make
test`` runs it with ``-n 2``).

**Shared studies.** A study that several modules read is a session fixture here (:data:`SHARED_STUDIES`): built
once per test session and worker, on first use; a test works on a copy when it changes it.

**Scheduling.** Every test goes to the worker of its group: the shared studies that its module's tests use (read
off the fixtures they request, directly or through other fixtures), so that each such study is built on one
worker only; else its module, so that a module's own fixtures are built once. The workers collect the tests, so each worker writes the
group of every test it collected into a folder the controller made (``DIFFCTL_TEST_GROUPS``), where the
controller's scheduler reads them. The groups start in collection order, which puts the tests marked ``slow``
(the studies) first, so that the short unit tests fill the end of the run. Without xdist nothing here changes a
test.

(xdist's own ``--dist loadgroup`` cannot be used: it renames test ids, which pytest 9 no longer allows.)
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from derived_study import build_derived_study
from study_fixture import SPEC, build_direct_study, build_tiny_study

GROUPS_ENV = "DIFFCTL_TEST_GROUPS"


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real tiny study of tests/study_fixture.py (read-only: copy it to change it)."""
    return build_tiny_study(tmp_path_factory.mktemp("tiny-study") / SPEC["name"])


@pytest.fixture(scope="session")
def direct_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same study built in-process without Ray (tests/study_fixture.py; read-only: copy it to change it)."""
    return build_direct_study(tmp_path_factory.mktemp("direct-study") / SPEC["name"])


@pytest.fixture(scope="session")
def derived_study(tmp_path_factory: pytest.TempPathFactory):
    """The distill and ablation study of tests/derived_study.py, killed in each of those phases and resumed."""
    return build_derived_study(tmp_path_factory.mktemp("derived"))


SHARED_STUDIES = ("tiny_study", "direct_study", "derived_study")


def groups(items: list[pytest.Item]) -> dict[str, str]:
    """The worker group of every test: the shared studies that the tests of its module use, else its module (a
    module stays on one worker, so that its own fixtures are built once)."""
    modules: dict[str, set[str]] = {}
    for item in items:
        used = modules.setdefault(item.nodeid.split("::", 1)[0], set())
        used.update(name for name in SHARED_STUDIES if name in item.fixturenames)
    module_group = {module: "+".join(sorted(used)) or module for module, used in modules.items()}
    return {item.nodeid: module_group[item.nodeid.split("::", 1)[0]] for item in items}


_made: list[str] = []  # the groups folder this (controller) process made


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput") and config.pluginmanager.hasplugin("xdist") and GROUPS_ENV not in os.environ:
        _made.append(tempfile.mkdtemp(prefix="diffctl-test-groups-"))
        os.environ[GROUPS_ENV] = _made[0]  # the workers inherit it


def pytest_unconfigure(config: pytest.Config) -> None:
    for folder in _made:
        shutil.rmtree(folder, ignore_errors=True)
        os.environ.pop(GROUPS_ENV, None)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: the studies first
    if hasattr(config, "workerinput") and GROUPS_ENV in os.environ:
        path = Path(os.environ[GROUPS_ENV]) / f"{config.workerinput['workerid']}.json"
        path.write_text(json.dumps(groups(items)), encoding="utf-8")


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    from xdist.scheduler import LoadScopeScheduling

    class StudyGroups(LoadScopeScheduling):
        """xdist's per-module scheduling with the groups the workers wrote as its scopes, in collection order."""

        groups: dict[str, str] = {}

        def _split_scope(self, nodeid: str) -> str:
            if nodeid not in self.groups:  # every worker has collected (and written its groups) by now
                for path in Path(os.environ[GROUPS_ENV]).glob("*.json"):
                    self.groups.update(json.loads(path.read_text(encoding="utf-8")))
            return self.groups.get(nodeid, nodeid.split("::", 1)[0])

    config.option.loadscopereorder = False
    return StudyGroups(config, log)
