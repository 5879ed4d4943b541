import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from diffctl.cli import main

FAST = ["--set", "eval.prior_samples=2000", "--set", "eval.triplets=2000"]


def diffctl(*args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("diffctl")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=300)


def strip_timing(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("epoch_time_s", "eval_time_s")} for r in rows]


def test_train_writes_config_metrics_and_state_dicts(tmp_path):
    out = tmp_path / "run"
    proc = diffctl("train", "--config", "configs/fixed.yaml", "--set", "optim.epochs=2", *FAST, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "epoch 2/2" in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "metrics.jsonl", "model.pt"]
    records = strip_timing(out / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [1, 2]
    state = torch.load(out / "model.pt", weights_only=True)
    assert set(state) == {"model", "arm"}
    assert "vae_a.encoder.layers.0.weight" in state["model"]
    # the resolved config reruns to the same records
    again = tmp_path / "again"
    assert main(["train", "--config", str(out / "config.yaml"), "--out", str(again), "--quiet"]) == 0
    assert strip_timing(again / "metrics.jsonl") == records


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "optim.epochz=2"], "optim.epochz: unknown key"),
        (["--set", "optim.epochs=-3"], "optim.epochs: input should be greater than or equal to 1"),
        (["--set", "optim.lr=abc"], "optim.lr: input should be a valid number"),
        (["--set", "arm.kind=magic"], "arm.kind: unknown arm kind 'magic'"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_no_directory(tmp_path, capsys, args, message):
    out = tmp_path / "run"
    assert main(["train", "--config", "configs/fixed.yaml", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_bad_input_from_the_real_binary(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("optim:\n  epochs: '5'\n")
    proc = diffctl("train", "--config", str(cfg), "--out", str(tmp_path / "run"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == "diffctl: error: optim.epochs: input should be a valid integer (got '5')"
    assert not (tmp_path / "run").exists()
    proc = diffctl("train", "--config", str(cfg))
    assert proc.returncode == 2 and "--out" in proc.stderr and proc.stderr.count("\n") == 1


def test_missing_parents_of_out_are_created(tmp_path, capsys):
    out = tmp_path / "runs" / "deep" / "x"
    args = ["--set", "optim.epochs=1", *FAST, "--set", "eval.triplet_indices=500"]
    assert main(["train", "--config", "configs/fixed.yaml", *args, "--out", str(out), "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "metrics.jsonl", "model.pt"]
    (tmp_path / "a-file").write_text("x")
    under_file = tmp_path / "a-file" / "x"
    assert main(["train", "--config", "configs/fixed.yaml", "--out", str(under_file)]) == 2
    assert capsys.readouterr().err == f"diffctl: error: --out {under_file}: {tmp_path / 'a-file'} is not a directory\n"


def test_existing_output_directory_is_refused(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("x")
    assert main(["train", "--config", "configs/fixed.yaml", "--out", str(tmp_path)]) == 2
    assert "exists and is not an empty directory" in capsys.readouterr().err


def test_divergence_exits_3_and_keeps_the_records(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--set", "optim.epochs=3", "--set", "optim.lr=10.0", "--set", "arm.w_recon=1000"]
    assert main(["train", "--config", "configs/fixed.yaml", *args, *FAST, "--out", str(out), "--quiet"]) == 3
    assert "diverged: non-finite" in capsys.readouterr().err
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["status"] == "diverged" and last["reason"]
