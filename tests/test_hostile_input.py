"""Property-based hostile input for the command-line entry points that read a config file.

Malformed YAML, wrong types, out-of-range values, unknown keys, absurd sizes and non-UTF-8 bytes must always
give exit status 2 with one line on stderr that names the problem, no traceback, and no output left behind.
"""

from __future__ import annotations

import copy

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diffctl.cli import main
from diffctl.config import ConfigError, config_from_dict

CASES = {"count": 0}

VALID = {
    "seed": 0,
    "data": {"split_seed": 42, "batch_size": 256},
    "model": {"latent_dim": 16, "temperature": 1.0},
    "optim": {"epochs": 1, "lr": 0.001, "threads": 1},
    "arm": {"kind": "fixed", "rho": 0.1, "w_kl": 0.1},
    "eval": {"seed": 0, "prior_samples": 100},
}
LEAVES = [
    ("seed",),
    ("data", "split_seed"),
    ("data", "batch_size"),
    ("model", "latent_dim"),
    ("model", "temperature"),
    ("optim", "epochs"),
    ("optim", "lr"),
    ("optim", "threads"),
    ("arm", "kind"),
    ("arm", "rho"),
    ("arm", "w_kl"),
    ("eval", "prior_samples"),
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


@st.composite
def mutated_configs(draw):
    """A valid config with one leaf replaced, or one unknown key added."""
    data = copy.deepcopy(VALID)
    if draw(st.booleans()):
        path = draw(st.sampled_from(LEAVES))
        node = data
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = draw(scalars)
    else:
        section = draw(st.sampled_from([None, "data", "optim", "arm", "eval"]))
        key = draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=10))
        target = data if section is None else data[section]
        if key in target:
            return data
        target[key] = draw(scalars)
    return data


def run_cli(argv, capsys) -> tuple[int, str]:
    CASES["count"] += 1
    code = main(argv)
    return code, capsys.readouterr().err


def assert_one_line_error(code: int, err: str) -> None:
    assert code == 2, err
    assert err.startswith("diffctl: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err


def is_valid(data) -> bool:
    try:
        config_from_dict(data)
        return True
    except ConfigError:
        return False


ENTRY_POINTS = {
    "train": lambda cfg, out: ["train", "--config", str(cfg), "--out", str(out), "--quiet"],
    "gradcheck": lambda cfg, out: ["gradcheck", "--config", str(cfg), "--json"],
}
HYP = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@HYP
@given(data=mutated_configs())
def test_mutated_configs(entry, data, tmp_path, capsys):
    if is_valid(data):
        return  # a mutation that happens to be valid is not hostile
    cfg, out = tmp_path / "c.yaml", tmp_path / "out"
    cfg.write_text(yaml.safe_dump(data))
    assert_one_line_error(*run_cli(ENTRY_POINTS[entry](cfg, out), capsys))
    assert not out.exists()


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@HYP
@given(raw=st.binary(max_size=64))
def test_arbitrary_bytes(entry, raw, tmp_path, capsys):
    cfg, out = tmp_path / "c.yaml", tmp_path / "out"
    cfg.write_bytes(raw)
    try:
        parsed = yaml.safe_load(raw.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError):
        parsed = "unparseable"
    if parsed is None or (isinstance(parsed, dict) and is_valid(parsed)):
        return  # an empty or valid document is a real config, not hostile input
    assert_one_line_error(*run_cli(ENTRY_POINTS[entry](cfg, out), capsys))
    assert not out.exists()


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize(
    "setter",
    ["optim.epochs=1000000000", "data.batch_size=0", "eval.prior_samples=1e12", "optim.threads=100000", "=3", "x"],
)
def test_absurd_overrides(entry, setter, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ENTRY_POINTS[entry]("configs/fixed.yaml", out) + ["--set", setter]
    assert_one_line_error(*run_cli(argv, capsys))
    assert not out.exists()


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_unreadable_paths(entry, tmp_path, capsys):
    locked = tmp_path / "locked.yaml"
    locked.write_text("optim: {epochs: 0}\n")  # invalid too, in case the user (root) can read it anyway
    locked.chmod(0)
    for path in (tmp_path / "missing.yaml", tmp_path, locked):
        assert_one_line_error(*run_cli(ENTRY_POINTS[entry](path, tmp_path / "out"), capsys))


def test_cases_were_tried():
    print(f"hostile config inputs tried: {CASES['count']}")
    assert CASES["count"] > 100
