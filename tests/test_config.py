import pytest

from diffctl.config import ConfigError, config_from_dict, dump_config, load_config, parse_yaml


def test_defaults_match_the_fixed_arm_of_the_issue():
    cfg = load_config(None)
    assert (cfg.arm.kind, cfg.arm.rho, cfg.arm.w_recon, cfg.arm.w_kl, cfg.arm.w_rank, cfg.arm.w_ent) == (
        "fixed", 0.1, 1.0, 0.1, 0.5, 0.1,
    )
    assert (cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.clip, cfg.data.batch_size) == (1e-3, 1e-4, 1.0, 256)
    assert cfg.data.split_seed == 42 and cfg.optim.threads == 1


def test_overrides_and_round_trip(tmp_path):
    cfg = load_config("configs/fixed.yaml", ["optim.epochs=15", "arm.w_kl=2e-1", "seed=7"])
    assert (cfg.optim.epochs, cfg.arm.w_kl, cfg.seed) == (15, 0.2, 7)
    path = tmp_path / "c.yaml"
    path.write_text(dump_config(cfg))
    assert load_config(path) == cfg


def test_yaml_reads_exponent_floats_without_a_dot():
    assert parse_yaml("lr: 1e-3", "x") == {"lr": 0.001}


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["optim.epochz=3"], "optim.epochz: unknown key"),
        (["optim.epochs=-1"], "optim.epochs: input should be greater than or equal to 1"),
        (["optim.epochs=1000000000"], "optim.epochs: input should be less than or equal to 10000"),
        (["optim.lr=fast"], "optim.lr: input should be a valid number"),
        (["optim.epochs=2.5"], "optim.epochs: input should be a valid integer"),
        (["data.batch_size=0"], "data.batch_size: input should be greater than or equal to 8"),
        (["arm.kind=nope"], "arm.kind: unknown arm kind 'nope'"),
        (["arm.rho=2"], "arm.rho: input should be less than or equal to 1"),
        (["optim=3"], "optim: input should be a valid dictionary"),
        (["optim.epochs"], "expected key.path=value"),
        (["optim.epochs.x=1"], "--set optim.epochs.x: optim.epochs is not a section"),
        (["eval.full_every=0"], "eval.full_every: input should be greater than or equal to 1"),
        (["eval.full_every=2.0"], "eval.full_every: input should be a valid integer"),
        (["eval.full_epochs=[3, 0]"], "eval.full_epochs[1]: input should be greater than or equal to 1"),
        (["eval.full_epochs=5"], "eval.full_epochs: input should be a valid list"),
        (["optim.epochs=20", "eval.full_epochs=[4, 21]"], "eval.full_epochs: epoch 21 is beyond optim.epochs (20)"),
    ],
)
def test_bad_values_name_the_key_in_one_line(overrides, message):
    with pytest.raises(ConfigError) as exc:
        load_config("configs/fixed.yaml", overrides)
    text = str(exc.value)
    assert message in text and "\n" not in text


def test_bad_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: [1, 2\n")
    with pytest.raises(ConfigError, match="invalid YAML at line"):
        load_config(bad)
    bad.write_bytes(b"seed: \xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(bad)
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)
    with pytest.raises(ConfigError, match="arm.kind: missing"):
        config_from_dict({"arm": {"rho": 0.2}})
