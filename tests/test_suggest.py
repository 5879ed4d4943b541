"""An unknown key is told the known key it most likely meant (or the keys known there), in the one-line error of a
config file, a ``--set`` override and the command line; an unknown key is named before a missing one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated, Literal, Optional, Union

import pydantic
import pytest
from pydantic import Field

from diffctl.cli import main
from diffctl.config import Config, ConfigError, config_from_dict, first_error, format_validation_error, load_config
from diffctl.schema import Section
from diffctl.suggest import closest_key, known_keys

OPTIM_KEYS = ["epochs", "lr", "weight_decay", "clip", "threads"]


def message(data: dict) -> str:
    with pytest.raises(ConfigError) as exc:
        config_from_dict(data)
    text = str(exc.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize(
    "data, expected",
    [
        ({"optim": {"epoch": 2}}, "optim.epoch: unknown key (did you mean optim.epochs?)"),
        ({"arm": {"kind": "controller", "regularizr": "anchor"}},
         "arm.regularizr: unknown key (did you mean arm.regularizer?)"),
        ({"arm": {"kind": "controller", "defaults": {"rhoo": 0.1}}},
         "arm.defaults.rhoo: unknown key (did you mean arm.defaults.rho?)"),
        ({"arm": {"kind": "piecewise", "segments": [{"w_rnk": 1.0}]}},
         "arm.segments[0].w_rnk: unknown key (did you mean arm.segments[0].w_rank?)"),
        ({"optimm": {"epochs": 2}}, "optimm: unknown key (did you mean optim?)"),
        # a difference in case only, even where difflib sees no likeness ("LR" and "lr" share no character)
        ({"optim": {"LR": 0.1}}, "optim.LR: unknown key (did you mean optim.lr?)"),
        ({"loss": {"MARGIN": 0.1}}, "loss.MARGIN: unknown key (did you mean loss.margin?)"),
        # nothing close: the keys known there, where they are few
        ({"optim": {"foo": 1}}, f"optim.foo: unknown key (known: {', '.join(OPTIM_KEYS)})"),
        # nothing close among the controller's many keys: no hint rather than a long list
        ({"arm": {"kind": "controller", "zzzz": 1}}, "arm.zzzz: unknown key"),
    ],
)
def test_an_unknown_key_names_the_key_it_most_likely_meant(data, expected):
    assert message(data) == expected


def test_a_set_override_gives_the_same_line(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load_config("configs/fixed.yaml", ["optim.epoch=3"])
    assert str(exc.value) == "optim.epoch: unknown key (did you mean optim.epochs?)"
    with pytest.raises(ConfigError) as exc:
        load_config(None, ["arm.kind=controller", "arm.regularizr=anchor"])
    assert str(exc.value) == "arm.regularizr: unknown key (did you mean arm.regularizer?)"


def test_the_keys_known_along_a_location():
    assert known_keys(Config, ("optim", "epoch")) == OPTIM_KEYS
    assert known_keys(Config, ("seed",))[:3] == ["seed", "data", "model"]
    controller = known_keys(Config, ("arm", "controller", "regularizr"))
    assert "regularizer" in controller and "rho" not in controller  # the tag picks the controller's own keys
    assert "until_epoch" in known_keys(Config, ("arm", "piecewise", "segments", 0, "x"))
    assert known_keys(Config, ("provenance", "x")) is None  # a free-form mapping knows no keys
    assert known_keys(Config, ("nosuch", "x")) is None
    assert closest_key("epochs", OPTIM_KEYS) is None  # a known key is no typo


class Leaf(Section):
    low: float = 0.0
    high: float = 1.0


class Other(Section):
    kind: Literal["other"] = "other"
    width: int = 1


class Tagged(Section):
    kind: Literal["tagged"] = "tagged"
    depth: int = 1


class Spec(Section):
    """A study-spec-like model: a required key, mappings of sections, an optional and a tagged union."""

    epochs: int
    name: str = "x"
    space: dict[str, Leaf] = {}
    bounds: Optional[Leaf] = None
    pair: Union[Leaf, Other] = Leaf()
    arm: Annotated[Union[Other, Tagged], Field(discriminator="kind")] = Other()


def errors_of(data: dict) -> list[dict]:
    with pytest.raises(pydantic.ValidationError) as exc:
        Spec.model_validate(data)
    return exc.value.errors()


def test_an_unknown_key_is_named_before_a_missing_one():
    errors = errors_of({"epoch": 3})
    assert [e["type"] for e in errors] == ["missing", "extra_forbidden"]  # pydantic's order names the missing key
    assert format_validation_error(first_error(errors), Spec) == "epoch: unknown key (did you mean epochs?)"
    assert first_error(errors_of({}))["type"] == "missing"
    wrong = errors_of({"epochs": "3", "bounds": {"lo": 1.0}})
    assert first_error(wrong)["type"] == "extra_forbidden"


@pytest.mark.parametrize(
    "data, expected",
    [
        ({"epochs": 1, "space": {"arm.rho": {"hihg": 1.0}}},
         "space.arm.rho.hihg: unknown key (did you mean space.arm.rho.high?)"),
        ({"epochs": 1, "bounds": {"lowe": 1.0}}, "bounds.lowe: unknown key (did you mean bounds.low?)"),
        # the tag stays in the key shown (only diffctl's arm kinds are dropped; a caller drops its own)
        ({"epochs": 1, "arm": {"kind": "tagged", "dpth": 2}},
         "arm.tagged.dpth: unknown key (did you mean arm.tagged.depth?)"),
        ({"epochs": 1, "nme": "y"}, "nme: unknown key (did you mean name?)"),
        ({"epochs": 1, "zzz": 0}, "zzz: unknown key (known: epochs, name, space, bounds, pair, arm)"),
    ],
)
def test_a_model_of_ones_own_walks_mappings_optionals_and_unions(data, expected):
    assert format_validation_error(first_error(errors_of(data)), Spec) == expected


def test_a_union_member_named_by_its_class_or_by_no_tag():
    assert known_keys(Spec, ("pair", "Other", "widht")) == ["kind", "width"]  # a smart union names the class
    assert known_keys(Spec, ("arm", "dpth")) == ["kind", "width", "depth"]  # tag dropped: any member's keys
    err = first_error(errors_of({"epochs": 1, "arm": {"kind": "tagged", "dpth": 2}}))
    assert format_validation_error(dict(err, loc=("arm", "dpth")), Spec) == (
        "arm.dpth: unknown key (did you mean arm.depth?)"
    )


def test_no_hint_without_a_model_or_for_another_models_location():
    err = first_error(errors_of({"epochs": 1, "nme": "y"}))
    assert format_validation_error(err, None) == "nme: unknown key"
    # the default model is Config: a location of another model gets no hint from it
    assert format_validation_error(dict(err, loc=("optim", "lr"))) == "optim.lr: unknown key"


def test_the_command_line_exits_2_with_the_hint_in_one_line(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("optim:\n  epoch: 2\n")
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "diffctl: error: optim.epoch: unknown key (did you mean optim.epochs?)\n"
    assert not out.exists()
    config.write_text("arm:\n  kind: controller\n  regularizr: anchor\n")
    proc = subprocess.run([str(Path(sys.executable).with_name("diffctl")), "train", "--config", str(config),
                           "--out", str(out)], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr == "diffctl: error: arm.regularizr: unknown key (did you mean arm.regularizer?)\n"
    assert not out.exists()
