"""``diffctl fronts``: the published lookahead controller's front (results/controller-front) placed against the
published fixed-λ front (results/open-questions) at equal rate. Each feasible point's margin is its mean minus the
fixed-λ trade-off curve at its rate, recomputed here with numpy from the reference's front.csv; its position
follows its interval; the plot is written. A directory without a front, or none at all, is refused in one line."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tiny_specs import run_diffctl

RESULTS = Path(__file__).resolve().parents[1] / "results"
REFERENCE, OTHER = RESULTS / "open-questions", RESULTS / "controller-front"
pytestmark = pytest.mark.skipif(not (REFERENCE / "tables" / "front.csv").is_file()
                                or not (OTHER / "spec.yaml").is_file(), reason="the two published fronts")


def _curve(front: pd.DataFrame) -> pd.DataFrame:
    """The feasible points that no feasible point ranks above at equal or lower rate, by rising rate."""
    ok = front[front["feasible"]].sort_values(["final_val_loss_unweighted", "final_triplet_untied_AB"],
                                              ascending=[True, False])
    best = ok["final_triplet_untied_AB"].cummax().shift(fill_value=-np.inf)
    return ok[ok["final_triplet_untied_AB"] > best]


def test_each_point_is_placed_against_the_reference_curve_at_its_rate(tmp_path):
    other = Path(shutil.copytree(OTHER, tmp_path / OTHER.name))
    done = run_diffctl("fronts", str(REFERENCE), str(other))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(other / "tables" / "fronts.csv"), str(other / "plots" / "fronts.png")]
    assert (other / "plots" / "fronts.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = pd.read_csv(other / "tables" / "fronts.csv")
    reference = pd.read_csv(REFERENCE / "tables" / "front.csv")
    grid = yaml.safe_load((other / "spec.yaml").read_text())["front"]["grid"]
    assert (table["front"] == "reference").sum() == len(reference) == 25
    mine = table[table["front"] == "other"]
    assert len(mine) == np.prod([len(v) for v in grid.values()]) and mine["arm"].eq("controller").all()
    curve = _curve(reference)
    assert set(table.loc[(table["front"] == "reference") & table["on_own_curve"], "point"]) == set(curve["point"])
    placed = mine[mine["feasible"] & (mine["rate"] >= curve["final_val_loss_unweighted"].min())]
    assert len(placed) >= 2
    for row in placed.itertuples():
        at_rate = np.interp(row.rate, curve["final_val_loss_unweighted"], curve["final_triplet_untied_AB"])
        assert row.front_value == pytest.approx(at_rate)
        assert row.margin_over_front == pytest.approx(row.selection - at_rate)
        assert row.front_ci_low < row.margin_over_front < row.front_ci_high
        expected = "beyond" if row.front_ci_low > 0 else "behind" if row.front_ci_high < 0 else "on"
        assert row.front_position == expected


def test_a_study_without_a_front_is_refused_in_one_line(tmp_path):
    other = Path(shutil.copytree(OTHER, tmp_path / "no-front", ignore=shutil.ignore_patterns("plots", "tables")))
    spec = yaml.safe_load((other / "spec.yaml").read_text())
    spec["front"] = None
    (other / "spec.yaml").write_text(yaml.safe_dump(spec))
    for args in ((str(REFERENCE), str(other)), (str(REFERENCE), str(tmp_path / "missing"))):
        done = run_diffctl("fronts", *args)
        assert done.returncode == 2 and done.stdout == "", done.stdout
        assert len(done.stderr.strip().splitlines()) == 1 and args[1] in done.stderr, done.stderr
    assert not (other / "tables").exists()  # nothing written
