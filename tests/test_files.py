import os

import pytest
import torch

from diffctl import files


def test_interrupted_write_leaves_the_previous_version(tmp_path, monkeypatch):
    target = tmp_path / "metrics.jsonl"
    files.atomic_write_jsonl(target, [{"epoch": 1, "x": 0.5}])
    before = target.read_bytes()

    def killed(*_args, **_kwargs):
        raise KeyboardInterrupt  # the process is stopped between writing the temporary file and the rename

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        files.atomic_write_jsonl(target, [{"epoch": 1, "x": 0.5}, {"epoch": 2, "x": 0.7}])
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"]  # no temporary file left behind


def test_interrupted_torch_save_leaves_the_previous_version(tmp_path, monkeypatch):
    target = tmp_path / "model.pt"
    files.atomic_torch_save(target, {"w": torch.ones(3)})

    def torn(obj, path):
        with open(path, "wb") as fh:
            fh.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", torn)
    with pytest.raises(OSError):
        files.atomic_torch_save(target, {"w": torch.zeros(3)})
    assert torch.equal(torch.load(target, weights_only=True)["w"], torch.ones(3))
    assert len(list(tmp_path.iterdir())) == 1


def test_non_finite_floats_become_null():
    line = files.json_line({"a": float("nan"), "b": float("inf"), "c": 1.5, "d": "ok"})
    assert line == '{"a": null, "b": null, "c": 1.5, "d": "ok"}\n'
