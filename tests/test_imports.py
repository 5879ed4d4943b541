"""The drawing of the house is tested like any other behaviour: the import contracts of pyproject.toml
(``[tool.importlinter]``: the three layers, diffctl without Ray, Optuna or pandas, the analysis without Ray, the
spec importing diffctl only, phases that never import each other, report sections that never import each other,
and no import circle at any depth) hold on the project, and break on a copy of it with a circle added."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("diffctl", "study", "analysis")
LINT_IMPORTS = str(Path(sys.executable).with_name("lint-imports"))


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the packages under ``root`` (its pyproject.toml), without a cache."""
    return subprocess.run([LINT_IMPORTS, "--no-cache"], cwd=root, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})


def test_the_import_contracts_hold():
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "7 kept, 0 broken" in done.stdout


def _broken(tmp_path: Path, module: str, added: str) -> str:
    """``lint-imports``'s output on a copy of the packages with ``added`` appended to ``module`` (a path under the
    root); it must exit 1."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__", "specs"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    path = tmp_path / module
    path.write_text(path.read_text() + added)
    done = lint_imports(tmp_path)
    assert done.returncode == 1, done.stdout[-3000:]
    return done.stdout


def test_a_circle_anywhere_breaks_a_contract(tmp_path):
    # study.protocol.errors is imported by study.protocol.trees; a function-local import back makes a circle of two
    # modules of one package.
    out = _broken(tmp_path, "study/protocol/errors.py", "\n\ndef _circle():\n    from . import trees  # noqa: F401\n")
    assert "No import circle anywhere (between the modules of any package, at any depth) BROKEN" in out
    assert "No cycles are allowed in study.protocol." in out


def test_a_phase_importing_another_breaks_the_independence_contract(tmp_path):
    out = _broken(tmp_path, "study/phases/confirm.py", "\nfrom . import distill  # noqa: E402,F401\n")
    assert "A phase never imports another phase BROKEN" in out
