"""Which code ran a study: every trial records the commit of the sources and whether the tree was clean (with a
hash of the changes when not); the report's header and the export name it, and warn when no commit holds the code
(a dirty tree). The sources here are a scratch git repository, changed after its commit."""

from __future__ import annotations

import subprocess

import pytest

import diffctl.provenance as provenance
from analysis.cli import analyze
from analysis.export import export_command
from diffctl.config import load_config
from study.trialdir import read_trials
from study_fixture import build_direct_study


def _git(repo, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True,
                          env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                               "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin"})
    return done.stdout.strip()


@pytest.fixture
def dirty_sources(tmp_path, monkeypatch):
    repo = tmp_path / "sources"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "diffctl").mkdir()
    (repo / "results").mkdir()
    (repo / "diffctl" / "code.py").write_text("x = 1\n")
    (repo / "results" / "report.md").write_text("first\n")
    _git(repo, "add", "diffctl", "results")
    _git(repo, "commit", "-q", "-m", "first")
    (repo / "diffctl" / "code.py").write_text("x = 2\n")  # changed, not committed
    monkeypatch.setattr(provenance, "SOURCES", repo)
    provenance.code_version.cache_clear()
    yield _git(repo, "rev-parse", "HEAD")
    provenance.code_version.cache_clear()


@pytest.mark.slow
def test_a_study_from_a_dirty_tree_records_it_and_says_so(dirty_sources, tmp_path, capsys):
    code = provenance.code_version()
    assert code["commit"] == dirty_sources and code["dirty"] and len(code["diff_sha256"]) == 64
    study_dir = build_direct_study(tmp_path / "study" / "tiny")
    runs = [t for phase in ("search", "confirm") for t in read_trials(study_dir / phase / "fixed")]
    assert runs and all(t.info.code == code and not t.info.mixed_code for t in runs)
    report = analyze(study_dir).read_text()
    assert f"Code: the trials ran from commit {dirty_sources[:12]} with local changes" in report
    assert "**Warning: a dirty tree**" in report
    capsys.readouterr()
    assert export_command(str(study_dir), "fixed", str(tmp_path / "best.yaml")) == 0
    assert "ran from a dirty tree" in capsys.readouterr().err
    exported = load_config(tmp_path / "best.yaml").provenance["code"]
    assert exported["trials"] == code and exported["export"] == code


def test_a_clean_tree_has_no_diff(tmp_path, monkeypatch, dirty_sources):
    _git(provenance.SOURCES, "commit", "-q", "-am", "second")
    (provenance.SOURCES / "results" / "report.md").write_text("rewritten by an analysis\n")  # results, not code
    provenance.code_version.cache_clear()
    code = provenance.code_version()
    assert code == {"commit": _git(provenance.SOURCES, "rev-parse", "HEAD"), "dirty": False, "diff_sha256": None}
    assert provenance.describe(code) == f"commit {code['commit'][:12]}"
    monkeypatch.setattr(provenance, "SOURCES", tmp_path)  # not a git checkout
    provenance.code_version.cache_clear()
    assert provenance.code_version() is None
