"""Any arm as the reference (``reference:`` in the spec, ``StudySpec.reference_arm``): a tiny study of two
controller arms and no fixed-λ arm, with ``reference: plain`` (the second arm), built in-process without Ray by the
study's own code (``tests/study_fixture.build_direct_study``). The verdicts, the Conclusions, the fairness tables
(compute, freedom, box) and the report name `plain`, never a fixed-λ arm; a spec that names no arm the rule can
fall back on, or an unknown one, is refused at load naming ``reference``.
"""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import pandas as pd
import pytest

import study_fixture
from analysis import fairness
from analysis.cli import analyze
from analysis.compare import paired_vs_fixed
from analysis.load import build_tables
from analysis.trajectory import box_check
from diffctl.cli import main
from study.protocol import load_spec
from tiny_specs import spec_variant, write_spec

pytestmark = pytest.mark.slow

ARMS = {
    "barrier": {"budget": 1, "config": {"arm": {"kind": "controller", "regularizer": "log_barrier"}},
                "space": {"arm.regularizer_strength": {"type": "float", "low": 0.5, "high": 2.0}}},
    "plain": {"budget": 1, "config": {"arm": {"kind": "controller"}},
              "space": {"arm.hidden": {"type": "int", "low": 16, "high": 32}}},
}
SPEC = spec_variant(name="ref", arms=ARMS, reference="plain", confirm={"top_k": 1, "seeds": [1001, 1002], "distill": []})
PARAMS = {"barrier": [{"arm.regularizer_strength": 1.0}], "plain": [{"arm.hidden": 32}]}  # each arm's defaults


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("reference") / SPEC["name"]
    with mock.patch.object(study_fixture, "SPEC", SPEC), mock.patch.object(study_fixture, "SEARCH_PARAMS", PARAMS):
        study_fixture.build_direct_study(root)
    analyze(root)
    return root


def test_the_spec_resolves_its_reference(tmp_path):
    spec = load_spec(write_spec(tmp_path, SPEC))
    assert spec.reference == spec.reference_arm() == "plain"
    default = load_spec(write_spec(tmp_path, spec_variant(), "default.yaml"))
    assert default.reference == "fixed"  # the first fixed-λ arm, written into the resolved spec


@pytest.mark.parametrize("changes, message", [
    ({"arms": ARMS}, "reference: missing, and no arm to default to (the default is the first non-PBT arm whose "
                     "config trains arm.kind: fixed); name the arm every other arm is compared with (arms: barrier, "
                     "plain)"),
    ({"arms": ARMS, "reference": "plian"}, "reference: unknown arm 'plian' (did you mean plain?)"),
    ({"arms": ARMS, "reference": "fixed"}, "reference: unknown arm 'fixed' (arms: barrier, plain)"),
], ids=["no fixed arm", "misspelt", "unknown"])
def test_a_spec_without_a_reference_is_refused_naming_the_key(tmp_path, capsys, changes, message):
    spec = write_spec(tmp_path, spec_variant(**changes))
    for command in (["study", "check", str(spec)], ["study", "run", str(spec)]):
        assert main([*command, "--storage", str(tmp_path / "results")]) == 2
        err = capsys.readouterr().err
        assert err == f"diffctl: error: {message}\n", err
    assert not (tmp_path / "results").exists()


def test_the_verdicts_are_against_the_named_reference(study):
    tables = build_tables(study)
    assert tables.reference_arm() == "plain" and tables.reference_text() == "reference arm `plain` (controller)"
    paired = paired_vs_fixed(tables)
    assert not paired.empty and set(paired["reference"]) == {"plain"} and set(paired["arm"]) == {"barrier"}
    conclusions = pd.read_csv(study / "tables" / "conclusions.csv").set_index("arm")
    assert conclusions.loc["plain", "verdict"] == "reference"
    assert conclusions.loc["barrier", "verdict"] not in ("reference", "not compared")


def test_the_fairness_tables_name_the_reference(study):
    tables = build_tables(study)
    compute = fairness.compute_table(tables)
    assert set(compute["reference"]) == {"plain"}
    assert compute.set_index("arm").loc["plain", "vs_reference"] == 1.0
    freedom = fairness.freedom_table(tables).set_index("key")
    assert set(freedom["reference"]) == {"plain"}
    # the reference holds the barrier arm's searched strength constant, and searches what the barrier arm holds
    assert (freedom.loc["arm.regularizer_strength", "held_in"], freedom.loc["arm.regularizer_strength", "reference_part"]) \
        == ("plain", "holds")
    assert (freedom.loc["arm.hidden", "held_in"], freedom.loc["arm.hidden", "reference_part"]) == ("barrier", "searches")
    box = box_check(tables)  # a controller reference holds no constant weights: no box to compare with
    assert box.empty or set(box["reference"]) == {"plain"}
    saved = pd.read_csv(study / "tables" / "compute.csv")
    assert set(saved["reference"]) == {"plain"}


def test_the_report_speaks_of_the_named_reference(study):
    report = (study / "report.md").read_text(encoding="utf-8")
    assert "reference arm `plain` (controller)" in report
    assert "fixed-λ reference arm" not in report and "fixed-λ arm `" not in report
    assert "- Reference: every verdict, box, compute ratio and freedom note is against the reference arm `plain` " \
           "(controller) (named by the spec's `reference`)." in report
    assert "- Compute against the reference: `plain` trained 2 search trial-epochs" in report
    assert "`arm.regularizer_strength` is searched in `barrier` but held constant in `plain` (the reference)" in report
    assert "`arm.hidden` is searched in `plain` (the reference) but held constant in `barrier`" in report
