"""Property-based hostile input for the study and analysis entry points: ``study run | resume | status``,
``analyze``, ``export`` and ``reproduce`` (``train`` and ``gradcheck``: test_hostile_input.py, whose helpers and
strategies this module reuses).

Malformed YAML, wrong types, out-of-range values, unknown keys, absurd sizes, unreadable paths, non-UTF-8 bytes,
study directories with damaged files and tampered exports must give exit status 2 with one line on stderr that
names the problem, no traceback, and nothing written: no study directory, no table, no export. No case may start
Ray: the module replaces ``ray.init`` by a failure. The damaged directories are copies of the tiny study of
study_fixture.py (built once, without Ray unless another module built the real one already).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from diffctl.cli import main
from diffctl.config import config_from_dict, parse_yaml
from diffctl.errors import InputError
from diffctl.reproduce import recorded_objective
from study.protocol import check_resources, load_spec
from study_damage import STUDY_FILES, damage, garbled, mutations
from test_hostile_input import HYP, assert_one_line_error, run_cli
from tiny_specs import TINY, TINY_SPEC, write_spec

STUDY_CASES = {"count": 0}
FEW, MANY = settings(HYP, max_examples=40), settings(HYP, max_examples=70)


class RayStarted(AssertionError):
    """A hostile case reached ``ray.init``: it must be refused before (and starting Ray costs seconds)."""


@pytest.fixture(scope="module", autouse=True)
def no_ray():
    import ray

    def refuse(*args, **kwargs):
        raise RayStarted("ray.init called: the input was not refused before Ray starts")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ray, "init", refuse)
        mp.delenv("RAY_ADDRESS", raising=False)
        yield


@pytest.fixture(scope="module")
def exported(direct_study, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("export") / "best.yaml"
    assert main(["export", str(direct_study), "--arm", "fixed", "--out", str(path)]) == 0
    return path


def refused(argv, capsys, *named) -> str:
    """Run the command line on a hostile case: exit 2 and one line that names one of ``named``."""
    STUDY_CASES["count"] += 1
    code, err = run_cli([str(a) for a in argv], capsys)
    assert_one_line_error(code, err)
    assert not named or any(str(n) in err for n in named), (named, err)
    return err


@contextlib.contextmanager
def scratch(tmp_path: Path):
    """A fresh directory per example (hypothesis reuses ``tmp_path``), removed afterwards."""
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    try:
        yield work
    finally:
        shutil.rmtree(work)


def snapshot(root: Path) -> dict[str, int]:
    """Every path under ``root`` with its modification time: equal snapshots = nothing written."""
    return {str(p.relative_to(root)): p.lstat().st_mtime_ns for p in root.rglob("*")}


# --- study run -----------------------------------------------------------------------------------------------------
def spec_is_valid(path: Path) -> bool:
    """Whether ``study run`` would accept the spec and start Ray: such a case is not hostile."""
    try:
        check_resources(load_spec(path), os.cpu_count() or 1, "this machine")
    except InputError:
        return False
    return True


def run_refuses(spec: Path, capsys, *named, extra=()) -> None:
    storage = spec.parent / "results"
    refused(["study", "run", spec, "--storage", storage, *extra], capsys, *named)
    assert not storage.exists()  # not even the storage, let alone <storage>/<name>/


@MANY
@given(case=mutations(TINY))
def test_study_run_refuses_mutated_specs(case, tmp_path, capsys):
    data, named = case
    with scratch(tmp_path) as work:
        spec = write_spec(work, data)
        if not spec_is_valid(spec):
            run_refuses(spec, capsys, *named)


@FEW
@given(raw=st.one_of(st.binary(max_size=64), garbled(TINY_SPEC.read_bytes())))
def test_study_run_refuses_malformed_spec_files(raw, tmp_path, capsys):
    with scratch(tmp_path) as work:
        spec = work / "spec.yaml"
        spec.write_bytes(raw)
        if not spec_is_valid(spec):
            run_refuses(spec, capsys)


ABSURD_SPECS = [
    ({"epochs": 10**9}, "epochs"),
    ({"confirm": {"top_k": 10**9, "seeds": [1001]}}, "confirm.top_k"),
    ({"confirm": {"top_k": 1, "seeds": []}}, "confirm.seeds"),
    ({"confirm": {"top_k": 1, "seeds": [1001, 1001]}}, "confirm.seeds"),
    ({"base": {"data": {"batch_size": 0}}}, "batch_size"),
    ({"base": {"eval": {"prior_samples": 10**12}}}, "prior_samples"),
    ({"max_concurrent": 0}, "max_concurrent"),
    ({"cpus_per_trial": 256}, "cpus_per_trial"),  # inside the schema, more than this machine has
    ({"asha": {"grace_period": 0}}, "asha.grace_period"),
    ({"ablate": {"arm": "fixed", "axes": {f"q{i}": {"a": {"arm.rho": 0.0}} for i in range(10**3)}}}, "ablate.axes"),
    ({"ablate": {"arm": "fixed", "axes": {"q": {"a": {"arm.rho": 0.0}}}, "seeds": [10**12]}}, "ablate.seeds"),
    ({"ablate": {"arm": "fixed", "axes": {"q" * 10**4: {"a": {"arm.rho": 0.0}}}}}, "ablate.axes"),
    ({"ablate": {"arm": "fixed", "axes": {"q": {"../../x": {"arm.rho": 0.0}}}}}, "ablate.axes.q"),
    ({"ablate": {"arm": "fixed", "axes": {"q": {"a": {"arm.rho." * 100 + "x": 0.0}}}}}, "ablate.axes.q.a"),
    ({"ablate": {"arm": "fixed", "axes": {"q": {"a": {"arm.bogus": 0.0}}}}}, "ablate.axes.q.a.arm.bogus"),
    ({"ablate": {"arm": "nope", "axes": {"q": {"a": {"arm.rho": 0.0}}}}}, "ablate.arm"),
    ({"ablate": []}, "ablate"),
]


@pytest.mark.parametrize("changes, named", ABSURD_SPECS, ids=[str(c) for c, _ in ABSURD_SPECS])
def test_study_run_refuses_absurd_sizes(changes, named, tmp_path, capsys):
    run_refuses(write_spec(tmp_path, {**copy.deepcopy(TINY), **changes}), capsys, named)


@pytest.mark.parametrize("extra, named", [
    (["--max-concurrent", "0"], "--max-concurrent"),
    (["--max-concurrent", "-3"], "--max-concurrent"),
    (["--max-concurrent", "1000000000"], "--max-concurrent"),
    (["--max-concurrent", "two"], "--max-concurrent"),
    (["--name", "../escape"], "--name"),
    (["--name", ""], "--name"),
    (["--name", "x" * 65], "--name"),
])
def test_study_run_refuses_bad_arguments(extra, named, tmp_path, capsys):
    run_refuses(write_spec(tmp_path, TINY), capsys, named, extra=extra)


def test_study_run_refuses_unusable_paths(tmp_path, capsys):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for spec in (tmp_path / "missing.yaml", tmp_path):
        refused(["study", "run", spec, "--storage", tmp_path / "results"], capsys, spec)
    spec = write_spec(tmp_path, TINY)
    refused(["study", "run", spec, "--storage", a_file], capsys, "--storage")
    assert sorted(os.listdir(tmp_path)) == ["a-file", "spec.yaml"]


def test_study_run_refuses_a_storage_under_a_file(tmp_path, capsys):
    (tmp_path / "a-file").write_text("x")
    run_refuses(write_spec(tmp_path, TINY), capsys, "--storage", extra=["--storage", tmp_path / "a-file" / "sub"])


# --- a study directory that is not one (analyze, export, study status, study resume) ----------------------------
DIR_COMMANDS = {
    "analyze": lambda d, out: ["analyze", d],
    "export": lambda d, out: ["export", d, "--out", out],
    "status": lambda d, out: ["study", "status", d],
    "resume": lambda d, out: ["study", "resume", d],
}


@pytest.mark.parametrize("command", sorted(DIR_COMMANDS))
def test_paths_that_are_no_study(command, tmp_path, capsys):
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "empty").mkdir()
    for path in (tmp_path / "missing", tmp_path / "a-file", tmp_path / "empty"):
        refused(DIR_COMMANDS[command](path, tmp_path / "best.yaml"), capsys, path)
    assert sorted(os.listdir(tmp_path)) == ["a-file", "empty"] and not os.listdir(tmp_path / "empty")


# --- a study directory with a damaged file ---------------------------------------------------------------------
@pytest.mark.parametrize("command", ["analyze", "export"])
@MANY
@given(data=st.data(), target=st.sampled_from(sorted(STUDY_FILES)))
def test_damaged_study_files_are_refused_before_anything_is_written(command, data, target, direct_study, tmp_path,
                                                                    capsys):
    with scratch(tmp_path) as work:
        study = Path(shutil.copytree(direct_study, work / direct_study.name))
        path, hostile = damage(data, study, target)
        if not hostile:
            return
        before = snapshot(work)
        refused(DIR_COMMANDS[command](study, work / "best.yaml"), capsys, path.relative_to(study))
        assert snapshot(work) == before  # no table, plot, report or export, not even a temporary file


def test_a_spec_naming_a_metric_no_record_has_is_refused(direct_study, tmp_path, capsys):
    for key, value in [("selection", {"metric": "bogus", "mode": "max"}), ("constraints", ["status >= 1"])]:
        with scratch(tmp_path) as work:
            study = Path(shutil.copytree(direct_study, work / "tiny"))
            spec = yaml.safe_load((study / "spec.yaml").read_text())
            (study / "spec.yaml").write_text(yaml.safe_dump({**spec, key: value}))
            before = snapshot(work)
            for command in ("analyze", "export"):
                refused(DIR_COMMANDS[command](study, work / "best.yaml"), capsys, f"spec.yaml: {key}")
            assert snapshot(work) == before


def test_a_damaged_optuna_journal_costs_only_the_importances(direct_study, tmp_path, capsys):
    study = Path(shutil.copytree(direct_study, tmp_path / "tiny"))
    (study / "optuna.journal").write_text('{"op_code": 0, "study_name": 3}\nnot json\n')
    assert main(["analyze", str(study)]) == 0
    assert "optuna.journal unreadable" in (study / "report.md").read_text()


def _broken_state(content):
    return lambda study: (study / "state.json").write_text(json.dumps(content))


STATE_AND_SPEC_DAMAGE = {
    "state.json missing": ("state.json", lambda s: (s / "state.json").unlink()),
    "state.json truncated": ("state.json", lambda s: (s / "state.json").write_text('{"name": "tiny", "pha')),
    "state.json not UTF-8": ("state.json", lambda s: (s / "state.json").write_bytes(b"\xff{}")),
    "state.json a directory": ("state.json", lambda s: ((s / "state.json").unlink(), (s / "state.json").mkdir())),
    "spec.yaml missing": ("spec.yaml", lambda s: (s / "spec.yaml").unlink()),
    "spec.yaml invalid YAML": ("spec.yaml", lambda s: (s / "spec.yaml").write_text("epochs: [\n")),
    "spec.yaml wrong type": ("spec.yaml", lambda s: (s / "spec.yaml").write_text("epochs: two\n")),
}
STATE_SHAPES = {
    "state.json a list": [],
    "state.json without phases": {"name": "tiny", "created": "x", "ray_address": None},
    "state.json phases a list": {"name": "tiny", "created": "x", "phases": [], "ray_address": None},
}
TRIAL_DAMAGE = {
    "trial.json truncated": ("trial.json", lambda p: p.write_text(p.read_text()[:30])),
    "trial.json a list": ("trial.json", lambda p: p.write_text("[1, 2]")),
    "trial.json without status": ("trial.json", lambda p: p.write_text(json.dumps(
        {k: v for k, v in json.loads(p.read_text()).items() if k != "status"}))),
    "metrics.jsonl truncated": ("metrics.jsonl", lambda p: p.write_text(p.read_text()[:-40])),
    "metrics.jsonl not UTF-8": ("metrics.jsonl", lambda p: p.write_bytes(b"\x80" + p.read_bytes())),
    "metrics.jsonl a list record": ("metrics.jsonl", lambda p: p.write_text("[1]\n")),
}
STATUS_RESUME_CASES = [
    *(pytest.param(c, *STATE_AND_SPEC_DAMAGE[k], id=f"{c}: {k}") for c in ("status", "resume")
      for k in STATE_AND_SPEC_DAMAGE),
    *(pytest.param(c, "state.json", _broken_state(v), id=f"{c}: {k}")
      for c in ("status", "resume") for k, v in STATE_SHAPES.items()),
    *(pytest.param(c, name, lambda s, f=f, name=name: f(next(s.rglob(f"confirm/fixed/*/{name}"))),
                   id=f"{c}: {k}")
      for c in ("status", "resume") for k, (name, f) in TRIAL_DAMAGE.items()),
]


@pytest.mark.parametrize("command, named, damage_study", STATUS_RESUME_CASES)
def test_status_and_resume_refuse_a_damaged_study(command, named, damage_study, direct_study, tmp_path, capsys):
    study = Path(shutil.copytree(direct_study, tmp_path / "tiny"))
    damage_study(study)
    before = snapshot(tmp_path)
    refused(DIR_COMMANDS[command](study, None), capsys, named)
    assert snapshot(tmp_path) == before


ABLATION_PLANS = {
    "not JSON": "{\"arm\": ",
    "a list": "[]",
    "options not a list": json.dumps({"arm": "fixed", "centre": None, "params": {}, "seeds": [1001], "runs": [],
                                      "options": 3}),
    "an unknown status": json.dumps({"arm": "fixed", "centre": "x", "params": {}, "seeds": [1001], "runs": [],
                                     "options": [{"axis": "a", "option": "b", "label": "fixed.ablate.a.b",
                                                  "overrides": {}, "status": "maybe"}]}),
}


@pytest.mark.parametrize("command", ["status", "analyze"])
@pytest.mark.parametrize("case", sorted(ABLATION_PLANS))
def test_a_damaged_ablation_plan_is_refused(command, case, direct_study, tmp_path, capsys):
    study = Path(shutil.copytree(direct_study, tmp_path / "tiny"))
    (study / "ablate.json").write_text(ABLATION_PLANS[case])
    before = snapshot(tmp_path)
    refused(DIR_COMMANDS[command](study, None), capsys, "ablate.json")
    assert snapshot(tmp_path) == before


# --- export arguments ----------------------------------------------------------------------------------------------
def test_export_refuses_bad_arguments(direct_study, tmp_path, capsys):
    (tmp_path / "a-file").write_text("x")
    before = snapshot(direct_study)
    cases = [
        (["--out", tmp_path], "--out"),  # a directory
        (["--out", tmp_path / "missing" / "best.yaml"], "--out"),
        (["--out", tmp_path / "a-file" / "best.yaml"], "--out"),
        (["--arm", "nope", "--out", tmp_path / "best.yaml"], "--arm nope"),
        (["--arm", "unstable", "--out", tmp_path / "best.yaml"], "--arm unstable"),  # diverged: nothing confirmed
        ([], "--out"),
    ]
    for extra, named in cases:
        refused(["export", direct_study, *extra], capsys, named)
    assert os.listdir(tmp_path) == ["a-file"] and snapshot(direct_study) == before


# --- reproduce a tampered export -----------------------------------------------------------------------------------
def export_is_valid(raw: bytes, path: Path) -> bool:
    """Whether ``reproduce`` would accept the file and train: such a case is not hostile."""
    try:
        recorded_objective(config_from_dict(parse_yaml(raw, str(path))), path)
    except InputError:
        return False
    return True


def reproduce_refuses(raw: bytes, work: Path, capsys, *named) -> None:
    path = work / "best.yaml"
    path.write_bytes(raw)
    if not export_is_valid(raw, path):
        refused(["reproduce", path], capsys, *named)
        assert os.listdir(work) == ["best.yaml"]


@settings(HYP, max_examples=100)  # about half of the mutations touch provenance text that reproduce never reads
@given(data=st.data())
def test_reproduce_refuses_tampered_exports(data, exported, tmp_path, capsys):
    content, named = data.draw(mutations(yaml.safe_load(exported.read_text())))
    with scratch(tmp_path) as work:
        reproduce_refuses(yaml.safe_dump(content).encode(), work, capsys, *named)


@FEW
@given(data=st.data())
def test_reproduce_refuses_an_export_turned_to_garbage(data, exported, tmp_path, capsys):
    raw = data.draw(st.one_of(st.binary(max_size=64), garbled(exported.read_bytes())))
    with scratch(tmp_path) as work:
        reproduce_refuses(raw, work, capsys)


def test_reproduce_refuses_bad_arguments(exported, tmp_path, capsys):
    for tolerance in ("-1", "nan", "inf", "1e400", "abc"):
        refused(["reproduce", exported, "--tolerance", tolerance], capsys, "--tolerance")
    for path in (tmp_path / "missing.yaml", tmp_path):
        refused(["reproduce", path], capsys, path)
    # Only training tells whether a metric is a record field: the run ends with the same one line.
    data = yaml.safe_load(exported.read_text())
    data["provenance"]["objective"]["metric"] = "bogus"
    (tmp_path / "bogus.yaml").write_text(yaml.safe_dump(data))
    refused(["reproduce", tmp_path / "bogus.yaml"], capsys, "provenance.objective.metric")
    assert os.listdir(tmp_path) == ["bogus.yaml"]


# --- unreadable files ------------------------------------------------------------------------------------------
def test_files_without_read_permission(direct_study, exported, tmp_path, capsys):
    spec = write_spec(tmp_path, TINY)
    study = Path(shutil.copytree(direct_study, tmp_path / "tiny"))
    locked = [spec, study / "spec.yaml", next(study.rglob("trial.json")), next(study.rglob("metrics.jsonl")),
              Path(shutil.copy(exported, tmp_path / "best.yaml"))]
    for path in locked:
        path.chmod(0)
    if all(os.access(p, os.R_OK) for p in locked):
        pytest.skip("this user reads files without read permission (root)")
    run_refuses(spec, capsys, spec)
    for command in ("analyze", "export"):
        refused(DIR_COMMANDS[command](study, tmp_path / "out.yaml"), capsys, study)
    refused(["reproduce", tmp_path / "best.yaml"], capsys, "best.yaml")
    assert not (tmp_path / "out.yaml").exists() and not (study / "report.md").exists()


def test_cases_were_tried(capsys):
    with capsys.disabled():
        print(f"\nhostile study/analysis/export/reproduce inputs tried: {STUDY_CASES['count']}")
    assert STUDY_CASES["count"] > 200
