"""``diffctl gradcheck``: one JSON object per config, non-zero norms where a controller is in the loss graph."""

from __future__ import annotations

import json

import pytest

from diffctl.cli import main

OUTPUTS = {"rho", "w_recon", "w_kl", "w_rank", "w_ent"}


def gradcheck_json(capsys, *args: str) -> dict:
    assert main(["gradcheck", *args, "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    return json.loads(lines[0])


def test_seed_literal_gradient_reaches_every_output(capsys):
    report = gradcheck_json(capsys, "--config", "configs/seed_literal.yaml")
    assert report["arm"] == "controller" and set(report["outputs"]) == OUTPUTS
    assert all(entry["grad_norm"] > 0 for entry in report["outputs"].values())
    assert 0 < report["params_with_grad"] <= report["params_total"] == 1573  # 8 statistics, hidden 32, 5 outputs


def test_lookahead_reports_the_outer_objective_that_trains_it(capsys):
    # free_bits 0: a fresh model's KL elements all sit under the floor, which passes no gradient to w_kl
    report = gradcheck_json(capsys, "--config", "configs/controller_lookahead.yaml", "--set", "loss.free_bits=0.0")
    assert report["trained_by"] == "outer"
    assert all(entry["grad_norm"] > 0 for entry in report["outer"]["outputs"].values())
    assert report["outer"]["params_with_grad"] > 0


def test_hold_warmup_is_checked_after_the_warmup(capsys):
    report = gradcheck_json(capsys, "--config", "configs/seed_literal.yaml", "--set", "arm.warmup=hold",
                            "--set", "arm.warmup_epochs=3")  # fmt: skip
    assert report["epoch"] == 4 and all(e["grad_norm"] > 0 for e in report["outputs"].values())


def test_fixed_arm_has_no_controller(capsys):
    report = gradcheck_json(capsys, "--config", "configs/fixed.yaml")
    assert report["controller"] is False and "no controller" in report["message"]
    assert report["params_with_grad"] == 0 == report["params_total"]


def test_statenet_receives_no_gradient_and_says_so(capsys):
    report = gradcheck_json(capsys, "--config", "configs/statenet.yaml")
    assert report["params_total"] > 0 and report["params_with_grad"] == 0
    assert all(e["grad_norm"] == 0 and not e["in_graph"] for e in report["outputs"].values())
    assert "no gradient" in report["message"]


def test_text_report_and_bad_input(capsys, tmp_path):
    assert main(["gradcheck", "--config", "configs/seed_literal.yaml"]) == 0
    text = capsys.readouterr().out
    assert "w_rank" in text and "parameter entries with a gradient" in text
    assert main(["gradcheck", "--config", str(tmp_path / "missing.yaml"), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1 and "no such file" in captured.err


@pytest.mark.parametrize("override", ("arm.stats=[nope]", "arm.objective=magic"))
def test_bad_controller_option_exits_2_naming_the_key(capsys, override):
    assert main(["gradcheck", "--config", "configs/seed_literal.yaml", "--set", override]) == 2
    assert capsys.readouterr().err.startswith(f"diffctl: error: {override.split('=')[0]}:")



def test_text_explains_the_counts_per_tensor(capsys):
    # init_at_defaults starts the last layer at zero: on the first step only w3 (of its live units) and b3 get one
    report = gradcheck_json(capsys, "--config", "configs/controller_barrier.yaml")
    tensors = report["tensors"]
    assert list(tensors) == ["w1", "b1", "ln_w", "ln_b", "w2", "b2", "w3", "b3"]
    assert sum(size for _, size in tensors.values()) == report["params_total"] == 1573
    assert sum(count for count, _ in tensors.values()) == report["params_with_grad"]
    assert tensors["b3"] == [5, 5] and tensors["w1"][0] == tensors["w2"][0] == 0 and 0 < tensors["w3"][0] < 160
    assert tensors["w3"][0] % 5 == 0  # a live hidden unit reaches all 5 outputs, a dead one none
    assert main(["gradcheck", "--config", "configs/controller_barrier.yaml"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("loss ") and "at epoch 1 (the first batch of a fresh run)" in lines[1]
    reached = f"  parameter entries with a gradient: {report['params_with_grad']} of 1573, in 2 of 8 tensors:"
    assert reached in lines
    assert f"w3 {tensors['w3'][0]}/160, b3 5/5" in lines[lines.index(reached) + 1]
    assert any(line.startswith("note: counts are of single entries on one batch: a ReLU unit") for line in lines)
    assert "note: warmup init_at_defaults starts the last layer at zero: no gradient reaches the layers before it" \
        in lines


def test_text_says_why_it_checks_a_later_epoch(capsys):
    assert main(["gradcheck", "--config", "configs/seed_literal.yaml", "--set", "arm.warmup=hold",
                 "--set", "arm.warmup_epochs=3"]) == 0  # fmt: skip
    line = capsys.readouterr().out.splitlines()[1]
    expected = ("at epoch 4 (a fresh run put at the first epoch whose control comes wholly from the controller, "
                "after the hold warm-up of 3 epoch(s))")
    assert expected in line
