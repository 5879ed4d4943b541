"""``diffctl config show``: one row per key of the schema, for every arm kind, each with its meaning.

The keys expected are found by walking the pydantic schema here, so a field added without a description (or a new
arm kind) fails this test until the reference shows it.
"""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from diffctl.arms import ARM_CLASSES
from diffctl.arms.statistics import REGISTRY
from diffctl.cli import main
from diffctl.config import Config


def schema_fields(model: type[BaseModel], prefix: str = "") -> dict[str, str | None]:
    """Dotted key -> description of every field of ``model`` and of the sections inside it (``arm`` left out)."""
    found = {}
    for name, field in model.model_fields.items():
        if model is Config and name == "arm":
            continue
        found[f"{prefix}{name}"] = field.description
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            found.update(schema_fields(field.annotation, f"{prefix}{name}."))
    return found


def shown_rows(capsys, *args: str) -> dict[str, list[str]]:
    """Key -> the rows of ``config show`` that start with it (a key appears once per arm kind shown)."""
    assert main(["config", "show", *args]) == 0
    rows: dict[str, list[str]] = {}
    for line in capsys.readouterr().out.splitlines():
        if line and not line.startswith(" "):
            rows.setdefault(line.split()[0], []).append(line)
    return rows


@pytest.mark.parametrize("kind", list(ARM_CLASSES))
def test_every_field_of_every_arm_kind_is_shown_with_its_meaning(capsys, kind):
    rows = shown_rows(capsys, "--arm", kind)
    expected = {**schema_fields(Config), **schema_fields(ARM_CLASSES[kind].Options, "arm.")}
    assert len(expected) > 25
    missing = sorted(key for key in expected if key not in rows)
    assert not missing, f"keys missing from config show: {missing}"
    undescribed = sorted(key for key, text in expected.items() if not text and key != "arm.kind")
    assert not undescribed, f"fields without description=: {undescribed}"
    for key, text in expected.items():
        assert len(rows[key]) == 1 and rows[key][0].rstrip().endswith(text or ", ".join(ARM_CLASSES)), rows[key]


def test_without_arm_every_kind_is_shown_once(capsys):
    rows = shown_rows(capsys)
    assert [line.split()[2] for line in rows["arm.kind"]] == list(ARM_CLASSES)  # the default column: each kind
    assert len(rows["arm.rho"]) == sum("rho" in cls.Options.model_fields for cls in ARM_CLASSES.values())


def test_types_defaults_and_ranges_come_from_the_schema(capsys):
    rows = shown_rows(capsys, "--arm", "controller")
    assert rows["optim.lr"][0].split()[:4] == ["optim.lr", "float", "0.001", "(0,"]
    assert "10]" in rows["optim.lr"][0]
    assert rows["data.batch_size"][0].split()[:5] == ["data.batch_size", "int", "256", "[8,", "15746]"]
    assert "none | hold | blend | init_at_defaults" in rows["arm.warmup"][0]
    assert rows["arm.controller_lr"][0].split()[1:5] == ["float", "or", "null", "null"]
    assert rows["arm.hypergradient_beta"][0].split()[:3] == ["arm.hypergradient_beta", "float", "1e-06"]


def test_the_statistics_of_arm_stats_are_listed(capsys):
    assert main(["config", "show", "--arm", "controller"]) == 0
    out = capsys.readouterr().out
    assert f"statistics for arm.stats ({len(REGISTRY)})" in out and len(REGISTRY) == 12
    for name, stat in REGISTRY.items():
        assert f"  {name}" in out and stat.meaning in out
    assert main(["config", "show", "--arm", "fixed"]) == 0
    assert "statistics for arm.stats" not in capsys.readouterr().out


def test_unknown_arm_kind_is_one_line_exit_2(capsys):
    assert main(["config", "show", "--arm", "magic"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"diffctl: error: --arm 'magic': unknown arm kind (known: {', '.join(ARM_CLASSES)})\n"


def test_the_triplet_keys_name_r_s_ceiling_and_the_untied_fields(capsys):
    rows = shown_rows(capsys, "--arm", "fixed")
    assert "triplet_untied" in rows["eval.triplet_indices"][0]
    assert all(text in rows["eval.triplets"][0] for text in ("ceiling ~0.75", "triplet_untied", "triplet_tie_share"))
