import json
import subprocess
import sys

import pytest
import yaml

from analysis.compare import paired_vs_fixed, winner
from analysis.export import export_best, export_command
from analysis.load import build_tables
from diffctl.cli import main
from diffctl.config import load_config
from diffctl.errors import InputError
from diffctl.reproduce import reproduce_command
from diffctl.run import train_command
from study_fixture import SPEC, copy_study


@pytest.fixture(scope="module")
def study(tiny_study, tmp_path_factory):
    return copy_study(tiny_study, tmp_path_factory.mktemp("export"))


@pytest.fixture(scope="module")
def exported(study, tmp_path_factory):
    path = tmp_path_factory.mktemp("best") / "best.yaml"
    assert main(["export", str(study), "--arm", "fixed", "--out", str(path)]) == 0
    return path


def _confirm_dir(study, arm, seed):
    for trial in (study / "confirm" / arm).rglob("trial.json"):
        if json.loads(trial.read_text())["seed"] == seed:
            return trial.parent
    raise AssertionError(f"no confirmation run of {arm} with seed {seed}")


def _confirm_record(study, arm, seed):
    return json.loads((_confirm_dir(study, arm, seed) / "metrics.jsonl").read_text().splitlines()[-1])


@pytest.mark.slow
def test_export_writes_the_confirmation_winner_with_provenance(study, exported):
    config = load_config(exported)
    prov = config.provenance
    first_seed = SPEC["confirm"]["seeds"][0]
    record = _confirm_record(study, "fixed", first_seed)
    metric = SPEC["selection"]["metric"]
    assert prov["arm"] == "fixed" and prov["phase"] == "confirm" and config.seed == prov["seed"] == first_seed
    assert prov["objective"] == {"metric": metric, "mode": SPEC["selection"]["mode"], "value": record[metric],
                                 "epoch": SPEC["epochs"]}
    assert prov["threads"] == config.optim.threads == SPEC["cpus_per_trial"]
    assert {"python", "torch", "ray", "optuna"} <= set(prov["versions"]) and prov["versions"]["torch"]
    # the code that trained the run and the code that exported it (None outside a git checkout)
    assert prov["code"]["export"] is None or len(prov["code"]["export"]["commit"]) == 40
    run = json.loads((_confirm_dir(study, "fixed", first_seed) / "trial.json").read_text())
    assert prov["code"]["trials"] == run["code"]
    # the configuration's mean over its confirmation runs comes first, then the run exported
    assert list(prov).index("confirmation") < list(prov).index("objective")
    assert prov["confirmation"]["n"] == len(SPEC["confirm"]["seeds"]) and prov["confirmation"]["metric"] == metric
    # The exported config is the trial's config: same training, same evaluation settings.
    trial = load_config(next((study / "confirm" / "fixed").rglob("config.yaml")))
    assert config.model_copy(update={"provenance": None, "seed": trial.seed}) == trial
    assert not list(exported.parent.glob(".*.tmp"))  # written atomically: no temporary file left


@pytest.mark.slow
def test_export_then_reproduce_gives_the_same_value(exported, capsys):
    assert reproduce_command(str(exported), 0.0) == 0
    out = capsys.readouterr().out
    value = load_config(exported).provenance["objective"]["value"]
    assert "OK" in out and out.count(repr(value)) == 2  # recorded and reproduced, printed side by side


@pytest.mark.slow
def test_a_tampered_value_fails_unless_within_tolerance(exported, tmp_path, capsys):
    data = yaml.safe_load(exported.read_text())
    true_value = data["provenance"]["objective"]["value"]
    data["provenance"]["objective"]["value"] = true_value + 0.01
    tampered = tmp_path / "tampered.yaml"
    tampered.write_text(yaml.safe_dump(data))
    assert main(["reproduce", str(tampered)]) == 1
    err = capsys.readouterr().err
    assert "MISMATCH" in err and repr(true_value + 0.01) in err and repr(true_value) in err
    assert main(["reproduce", str(tampered), "--tolerance", "0.02"]) == 0


@pytest.mark.slow
def test_the_export_trains_with_diffctl_train(exported, tmp_path):
    assert train_command(str(exported), ["optim.epochs=1"], str(tmp_path / "run"), quiet=True) == 0
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 1


@pytest.mark.slow
def test_export_picks_the_winner_else_the_reference_arm(study, tmp_path, capsys):
    path = tmp_path / "best.yaml"
    assert export_command(str(study), None, str(path)) == 0
    out = capsys.readouterr().out
    chosen = load_config(path).provenance
    tables = build_tables(study)
    name, _ = winner(tables, paired_vs_fixed(tables))
    assert chosen["arm"] == (name or "fixed") and str(path) in out and f"arm `{chosen['arm']}`" in out
    assert chosen["selection_rule"]["chosen"] in out
    metric = SPEC["selection"]["metric"]
    values = [_confirm_record(study, chosen["arm"], s)[metric] for s in SPEC["confirm"]["seeds"]]
    assert chosen["confirmation"]["mean"] == pytest.approx(sum(values) / len(values))


@pytest.mark.slow
def test_bad_export_arguments_are_input_errors(study, tmp_path):
    with pytest.raises(InputError, match="--arm nope: no such arm"):
        export_best(study, "nope", tmp_path / "x.yaml")
    with pytest.raises(InputError, match="is a directory"):
        export_best(study, "fixed", tmp_path)
    with pytest.raises(InputError, match="parent directory"):
        export_best(study, "fixed", tmp_path / "missing" / "x.yaml")
    assert not list(tmp_path.iterdir())


def test_reproduce_refuses_a_file_without_provenance(tmp_path):
    plain = tmp_path / "plain.yaml"
    plain.write_text("optim: {epochs: 1}\n")
    with pytest.raises(InputError, match="provenance.objective: missing"):
        reproduce_command(str(plain), 0.0)
    plain.write_text("optim: {epochs: 1}\nprovenance: {objective: {metric: triplet_r_A, value: 0.5, epoch: 3}}\n")
    with pytest.raises(InputError, match="provenance.objective.epoch"):
        reproduce_command(str(plain), 0.0)
    with pytest.raises(InputError, match="--tolerance"):
        reproduce_command(str(plain), -1.0)


def test_reproduce_stays_in_the_diffctl_layer():
    code = "import sys, diffctl.reproduce; print(sorted({'pandas', 'optuna', 'ray', 'analysis'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
