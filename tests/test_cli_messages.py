"""The command line's own messages: help texts, usage errors, a file given to the wrong command, shipped spec names,
a folder of studies. None of these trains or starts Ray."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from diffctl.cli import build_parser, main
from study.cli import SHIPPED_SPECS, spec_path
from study.protocol.schema import MAX_CONCURRENT
from study.state import new_state, write_state

ROOT = Path(__file__).resolve().parents[1]
SPEC = str(ROOT / "study" / "specs" / "tiny.yaml")
CONFIG = str(ROOT / "configs" / "fixed.yaml")


def help_of(capsys, *command: str) -> str:
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def error_of(capsys, argv: list) -> str:
    """The one stderr line of a refused command (exit 2, nothing on stdout)."""
    assert main([str(a) for a in argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    return captured.err.rstrip("\n")


def test_top_level_help_has_a_plain_description_and_the_exit_codes(capsys):
    text = help_of(capsys)
    assert "``" not in text and "Differentiable training controllers for a dual VAE" in text
    codes = [line.split()[0] for line in text.split("exit codes:")[1].splitlines()[1:6]]
    assert codes == ["0", "1", "2", "3", "130"]
    assert "2    bad input: one line naming the key" in text and "config show" in text


@pytest.mark.parametrize("command", ["train", "gradcheck"])
def test_train_and_gradcheck_describe_themselves_and_the_set_syntax(capsys, command):
    text = " ".join(help_of(capsys, command).split())  # argparse wraps lines
    described = {"train": "Train one config; write into --out config.yaml", "gradcheck": "On one training batch"}
    assert described[command] in text
    assert "--set KEY=VALUE" in text and "KEY=VALUE as one argument" in text
    assert "arm.stats=[KL_A,KL_B]" in text and "repeat --set for several keys" in text


def test_outputs_and_tolerance_metric_are_in_the_help(capsys):
    analyze = " ".join(help_of(capsys, "analyze").split())
    outputs = "trials.parquet, epochs.parquet, tables/*.csv, plots/*.png and report.md"
    assert f"Write {outputs} into the study directory" in analyze
    reproduce = " ".join(help_of(capsys, "reproduce").split())
    assert "allowed absolute difference on the file's objective (provenance.objective.metric" in reproduce
    train = " ".join(help_of(capsys, "train").split())
    assert "missing parents are created" in train
    status = " ".join(help_of(capsys, "study", "status").split())
    assert "or a folder of studies" in status


def test_every_subcommand_has_a_help_line():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0]  # the one subparsers action
    assert sorted(a.dest for a in commands._choices_actions if a.help) == sorted(commands.choices)


def test_usage_errors_carry_no_doubled_prefix(capsys):
    # '--set optim.epochs 2' (a space instead of '='): the 2 is an argument of nobody
    assert error_of(capsys, ["train", "--config", CONFIG, "--set", "optim.epochs", "2", "--out", "x"]) == (
        "diffctl: error: unrecognized arguments: 2"
    )
    assert error_of(capsys, ["train", "--config", CONFIG]) == (
        "diffctl: error: train: the following arguments are required: --out"
    )
    assert error_of(capsys, ["study", "run"]) == "diffctl: error: study run: the following arguments are required: spec"


def test_a_study_spec_given_where_a_config_belongs_is_named(capsys, tmp_path):
    out = tmp_path / "run"
    for command in (["train", "--config", SPEC, "--out", out], ["gradcheck", "--config", SPEC]):
        assert error_of(capsys, command) == (
            f"diffctl: error: --config {SPEC}: is a study spec, not a diffctl config; run it with diffctl study run "
            f"{SPEC}"
        )
    assert error_of(capsys, ["reproduce", SPEC]) == (
        f"diffctl: error: {SPEC}: is a study spec, not a diffctl config; run it with diffctl study run {SPEC}"
    )
    assert not out.exists()


def test_a_config_given_to_study_run_is_named(capsys, tmp_path):
    assert error_of(capsys, ["study", "run", CONFIG, "--storage", tmp_path / "results"]) == (
        f"diffctl: error: {CONFIG}: is a diffctl config, not a study spec; train it with diffctl train --config "
        f"{CONFIG} --out DIR"
    )
    assert os.listdir(tmp_path) == []


def test_study_run_finds_a_shipped_spec_by_name(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert spec_path("tiny") == str(SHIPPED_SPECS / "tiny.yaml") and Path(spec_path("tiny")).is_file()
    assert spec_path("tiny.yaml") == "tiny.yaml"  # a file name stays a file name (missing: its own error)
    (tmp_path / "tiny").write_text("name: mine\n")
    assert spec_path("tiny") == "tiny"  # a file in the working directory comes first
    os.remove(tmp_path / "tiny")
    # found and read: the spec's own checks run (here the concurrency), before anything is created
    assert error_of(capsys, ["study", "run", "tiny", "--max-concurrent", "0", "--storage", tmp_path / "r"]) == (
        f"diffctl: error: --max-concurrent 0: must be 1..{MAX_CONCURRENT}"
    )
    names = ", ".join(sorted(p.stem for p in SHIPPED_SPECS.glob("*.yaml")))
    assert "quick" in names and "tiny" in names
    assert error_of(capsys, ["study", "run", "nosuch"]) == (
        f"diffctl: error: nosuch: no such file, and no shipped spec of that name (shipped: {names})"
    )
    assert os.listdir(tmp_path) == []


def test_study_status_on_a_folder_of_studies_lists_them(capsys, tmp_path):
    for name, finished in (("b-open", False), ("a-done", True)):
        (tmp_path / name).mkdir()
        state = new_state(name, None)
        state["created"] = "2026-11-30T10:00:00+0000"
        if finished:
            state["finished"] = True
        write_state(tmp_path / name, state)
    (tmp_path / "not-a-study").mkdir()
    assert main(["study", "status", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"2 studies in {tmp_path} (diffctl study status {tmp_path}/NAME shows one)",
        "  a-done  created 2026-11-30T10:00:00+0000  finished",
        "  b-open  created 2026-11-30T10:00:00+0000  not finished (resume: diffctl study resume "
        f"{tmp_path / 'b-open'})",
    ]
    # a folder holding no study is still refused as before
    assert error_of(capsys, ["study", "status", tmp_path / "not-a-study"]).endswith(
        "not-a-study: not a study directory (no state.json)"
    )
