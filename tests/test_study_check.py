"""``diffctl study check SPEC`` (every check ``study run`` makes before it starts, then the plan; nothing run or
written, no Ray) and ``diffctl study spec show`` (every spec key with its type, default, range and meaning, read
from the schema). Ablation values are checked at load: a value no configuration of the arm takes is refused naming
the axis, option and key with the values it takes; a per-VAE metric named without its suffix is told the suffix.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

from diffctl.cli import main
from study.protocol import load_spec
from study.phases.registry import total_trials
from study.protocol.schema import Ablate, Retune, StudySpec
from study.protocol.show import _models
from tiny_specs import TINY_SPEC, diffctl_env, spec_variant, write_spec

CONTROLLER = {"budget": 2, "config": {"arm": {"kind": "controller"}},
              "space": {"arm.regularizer": {"type": "categorical", "choices": ["none", "log_barrier"]}}}
PER_SAMPLE = spec_variant(arms={"fixed": spec_variant()["arms"]["fixed"], "controller": CONTROLLER},
                          ablate={"arm": "controller",
                                  "axes": {"rho granularity": {"sample": {"arm.rho_granularity": "sample"},
                                                               "per sample": {"arm.rho_granularity": "per_sample"}}}})


def _in_a_fresh_process(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """``diffctl ARGS`` in a new interpreter run from ``tmp_path``, printing after it whether Ray was imported."""
    code = ("import sys\nfrom diffctl.cli import main\ncode = main(sys.argv[1:])\n"
            "print('ray imported:', 'ray' in sys.modules)\nsys.exit(code)")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=tmp_path,
                          env=diffctl_env(), timeout=300, check=False)


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*"))


def test_a_good_spec_prints_its_plan_and_runs_nothing(tmp_path):
    spec = write_spec(tmp_path, spec_variant())
    before = _files(tmp_path)
    done = _in_a_fresh_process(tmp_path, "study", "check", str(spec), "--storage", "results")
    assert done.returncode == 0 and done.stderr == "", done.stderr
    out = done.stdout
    assert out.startswith(f"{spec}: the spec is valid; nothing was run or written (study run would write "
                          f"{tmp_path / 'results' / 'tiny'})")
    assert "reference arm every other arm is compared with: fixed (the default" in out
    rows = {tuple(line.split()[:2]): line.split()[-2:] for line in out.splitlines() if line.split()[:1] in
            (["search"], ["confirm"])}
    assert rows == {("search", "fixed"): ["2", "4"], ("search", "lr"): ["2", "4"],
                    ("confirm", "fixed"): ["2", "4"], ("confirm", "lr"): ["2", "4"]}
    total = next(line.split() for line in out.splitlines() if line.startswith("total"))
    assert total[-2:] == [str(total_trials(load_spec(spec))), "16"]
    assert out.rstrip().endswith("ray imported: False")
    assert _files(tmp_path) == before  # no study directory, no storage, nothing else


def test_the_plan_counts_every_phase_per_arm(capsys, tmp_path):
    spec = write_spec(tmp_path, spec_variant(arms={"fixed": spec_variant()["arms"]["fixed"], "controller": CONTROLLER},
                                             reference="controller", confirm={"seeds": [1001, 1002]},
                                             ablate={"arm": "controller", "axes": {"rho": {"per sample": {
                                                 "arm.rho_granularity": "sample"}}}}))
    assert main(["study", "check", str(spec), "--storage", str(tmp_path / "results")]) == 0
    out = capsys.readouterr().out
    assert "reference arm every other arm is compared with: controller (named by reference)" in out
    per_arm = {line.split()[0]: line.split()[1:] for line in out.split("Per arm")[1].splitlines()[2:] if line}
    # search, confirm, distill (final, mean, replay on 2 seeds), ablate (1 option on 2 seeds), trials, trial-epochs
    assert per_arm["arm"] == ["search", "confirm", "distill", "ablate", "trials", "trial-epochs"]
    assert per_arm["controller"] == ["2", "2", "6", "2", "12", "24"]
    assert per_arm["fixed"] == ["2", "2", "0", "0", "4", "8"]
    assert not (tmp_path / "results").exists()


def test_an_invalid_ablation_value_exits_2_naming_the_axis_and_the_valid_values(tmp_path):
    spec = write_spec(tmp_path, PER_SAMPLE)
    done = _in_a_fresh_process(tmp_path, "study", "check", str(spec))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr == ("diffctl: error: ablate.axes.rho granularity.per sample.arm.rho_granularity: input should "
                           "be 'batch', 'sample' or 'latent' (got 'per_sample')\n")
    assert _files(tmp_path) == [spec]


@pytest.mark.parametrize("command", ["run", "check"])
def test_run_refuses_what_check_refuses(tmp_path, capsys, command):
    spec = write_spec(tmp_path, PER_SAMPLE)
    assert main(["study", command, str(spec), "--storage", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ablate.axes.rho granularity.per sample.arm.rho_granularity" in err
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("where, changes", [
    ("constraints[0]", {"constraints": ["triplet_r >= 0.5"]}),
    ("objectives[1].metric", {"objectives": [{"metric": "val_loss_unweighted", "mode": "min"},
                                             {"metric": "triplet_r", "mode": "max"}], "selection": None}),
    ("selection.metric", {"selection": {"metric": "triplet_r", "mode": "max"}}),
])
def test_a_per_vae_metric_without_its_suffix_is_told_it(tmp_path, capsys, where, changes):
    spec = write_spec(tmp_path, spec_variant(**changes))
    assert main(["study", "check", str(spec)]) == 2
    err = capsys.readouterr().err
    assert err == (f"diffctl: error: {where}: unknown metric 'triplet_r' (did you mean triplet_r_A? a per-VAE metric "
                   "ends in _A or _B: triplet_r_A or triplet_r_B)\n"), err


def test_a_name_is_a_shipped_spec_and_a_taken_name_is_refused(tmp_path, capsys):
    (tmp_path / "tiny").mkdir()
    assert main(["study", "check", "tiny", "--storage", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith(f"diffctl: error: --name tiny: {tmp_path / 'tiny'} exists")
    assert main(["study", "check", str(TINY_SPEC), "--storage", str(tmp_path), "--name", "other"]) == 0
    assert f"study run would write {tmp_path / 'other'}" in capsys.readouterr().out


def _fields(model: type[BaseModel], seen: set) -> dict[tuple[str, str], str | None]:
    """(model, field) -> description of every field of every section reachable from ``model``."""
    found = {}
    if model in seen:
        return found
    seen.add(model)
    for name, field in model.model_fields.items():
        found[(model.__name__, name)] = field.description
        for inner in _models(field.annotation) + [m for arg in _args(field.annotation) for m in _models(arg)]:
            found.update(_fields(inner, seen))
    return found


def _args(annotation) -> list:
    import typing

    out = []
    for arg in typing.get_args(annotation):
        out += [arg, *_args(arg)]
    return out


def test_spec_show_lists_every_key_with_its_meaning(capsys):
    assert main(["study", "spec", "show"]) == 0
    out = capsys.readouterr().out
    fields = _fields(StudySpec, set())
    fields.update(_fields(Retune, set()))  # an ablation option's ``retune`` section (not a field of Ablate)
    assert ("Ablate", "axes") in fields and ("Pbt", "mutations") in fields and ("FloatDistribution", "step") in fields
    undescribed = sorted(key for key, text in fields.items() if not text)
    assert not undescribed, f"spec fields without description=: {undescribed}"
    rows = {line.split()[0]: line for line in out.splitlines() if line and not line.startswith(" ")}
    for key in ("epochs", "reference", "arms.<label>.budget", "arms.<label>.pbt.mutations", "confirm.seeds",
                "ablate.axes", "ablate.axes.<axis>.<option>.retune.budget", "objectives[].metric"):
        assert key in rows, key
    assert rows["epochs"].split()[1:4] == ["int", "required", "[1,"]
    assert rows["confirm.seeds"].split()[1:4] == ["list", "of", "int"] and "[1001, 1002, 1003]" in rows["confirm.seeds"]
    assert "optuna | pbt" in rows["arms.<label>.search"]
    for text in fields.values():
        assert text in out, text
    assert Ablate.model_fields["axes"].description in rows["ablate.axes"]


def test_the_readme_spec_of_your_own_study_checks(tmp_path, capsys):
    """README "Your own study": its spec passes every check and its plan is the one the README states."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Your own study", 1)[1].split("\n## ", 1)[0]
    spec = tmp_path / "two-controllers.yaml"
    spec.write_text(section.split("```yaml\n", 1)[1].split("```", 1)[0], encoding="utf-8")
    assert main(["study", "check", str(spec), "--storage", str(tmp_path / "results")]) == 0
    out = capsys.readouterr().out
    assert "reference arm every other arm is compared with: plain (named by reference)" in out
    total = next(line.split() for line in out.splitlines() if line.startswith("total"))
    assert total == ["total", "12", "6", "18", "180"]
    assert "12 search + 6 confirmation trials, 180 trial-epochs" in section
    assert not (tmp_path / "results").exists()
