"""Two fronts side by side: does an arm move the rate–selection trade-off, or only pick a point on it?

``diffctl fronts REFERENCE OTHER`` reads the front of each study (``analysis.front.front_table``: a grid of one
arm's settings, each point run to the last epoch on the front's seeds) — typically REFERENCE the fixed-λ front of
a full study and OTHER a study whose front sweeps an adaptive arm's confirmed configuration along the knob that
moves its rate (``study/specs/controller-front.yaml``: the lookahead controller's outer KL weight) — and writes
into OTHER:

- ``tables/fronts.csv``: one row per point of both fronts (``front``: ``reference`` or ``other``; the study, the
  arm, the point and its grid keys, its runs and feasible runs, its rate — the mean negative ELBO — and its mean
  selection metric, whether it is on its own front's trade-off curve); for each of OTHER's points, its place
  against REFERENCE's front at its own rate (``analysis.front.margin_over_front`` over the point's runs:
  ``margin_over_front`` with its 95% Welch interval, ``front_position`` beyond / on / behind, or why not placed).
- ``plots/fronts.png``: both fronts on rate × selection metric, each curve through its own non-dominated
  feasible points; hollow markers for points that missed the constraints on some seed.

OTHER moves the trade-off where its curve lies beyond REFERENCE's at equal rate (its points ``beyond``); it only
picks a point on it where its points lie ``on`` the reference curve. Both studies must rank on the same selection
metric. Nothing is trained and no Ray runs: the two studies' files are read.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import pandas as pd  # noqa: E402

from diffctl.errors import InputError  # noqa: E402
from diffctl.files import atomic_write_text  # noqa: E402
from study.protocol.reference import point_of  # noqa: E402

from .front import (  # noqa: E402
    RATE,
    curve_points,
    envelope,
    front_runs,
    front_table,
    margin_over_front,
    placed_points,
    placement_runs,
)
from .load import StudyTables, build_tables  # noqa: E402
from .plots import _save  # noqa: E402

TABLE, PLOT = "fronts.csv", "fronts.png"
PLACE = ["margin_over_front", "front_ci_low", "front_ci_high", "front_position", "front_value", "past_front",
         "front_reason"]


def _front_of(study_dir: str | Path) -> tuple[StudyTables, pd.DataFrame]:
    tables = build_tables(study_dir)
    front = front_table(tables)
    if front.empty:
        raise InputError(f"{study_dir}: no front to compare (its spec has no `front:`, or none of its runs ran)")
    return tables, front


def _rows(tables: StudyTables, front: pd.DataFrame, which: str) -> pd.DataFrame:
    points = curve_points(tables, front)
    sign = 1.0 if tables.spec.selection.mode == "max" else -1.0
    curve = set(envelope(placed_points(points), sign)["point"])
    keys = list(tables.spec.front.grid)
    rows = pd.DataFrame({"front": which, "study": tables.spec.name, "arm": tables.spec.front.arm,
                         "point": points["point"]})
    for key in keys:
        rows[key] = points[key]
    rows["runs"], rows["feasible_runs"] = points["runs"], points["feasible_runs"]
    rows["rate"], rows["selection"] = points["rate"], points["selection"]
    rows["feasible"] = points["feasible"].astype(bool)
    rows["on_own_curve"] = points["point"].isin(curve)
    return rows


def compare_fronts(reference_dir: str | Path, other_dir: str | Path) -> tuple[pd.DataFrame, StudyTables]:
    """Both fronts' points, OTHER's placed against REFERENCE's front (see the module docstring)."""
    reference, reference_front = _front_of(reference_dir)
    other, other_front = _front_of(other_dir)
    selection = other.spec.selection
    if (selection.metric, selection.mode) != (reference.spec.selection.metric, reference.spec.selection.mode):
        raise InputError(f"{other_dir}: selects on {selection.metric} ({selection.mode}), {reference_dir} on "
                         f"{reference.spec.selection.metric} ({reference.spec.selection.mode}): fronts of two "
                         "metrics are not comparable")
    mine = _rows(other, other_front, "other")
    runs = front_runs(other).assign(point=lambda f: f["trial_id"].map(point_of))
    curve = curve_points(reference, reference_front)
    placed = []
    for point in mine["point"]:
        own = placement_runs(other, runs[runs["point"] == point])
        place = margin_over_front(own, curve, selection.metric, selection.mode)
        placed.append({k: place[k] for k in PLACE})
    mine = pd.concat([mine.reset_index(drop=True), pd.DataFrame(placed, columns=PLACE)], axis=1)
    table = pd.concat([_rows(reference, reference_front, "reference"), mine], ignore_index=True)
    return table, other


def fronts_plot(table: pd.DataFrame, selection: str, path: Path) -> Path:
    """Both fronts on rate x selection metric (see the module docstring)."""
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for color, (which, rows) in zip(("black", "tab:purple"), table.groupby("front", sort=False)):
        label = f"{rows['study'].iloc[0]}: front of `{rows['arm'].iloc[0]}`"
        ok = rows[rows["feasible"]]
        ax.scatter(ok["rate"], ok["selection"], color=color, s=22, zorder=3)
        missed = rows[~rows["feasible"]]
        ax.scatter(missed["rate"], missed["selection"], facecolors="none", edgecolors=color, s=22, zorder=3)
        line = rows[rows["on_own_curve"]].sort_values("rate")
        ax.plot(line["rate"], line["selection"], color=color, marker="s", markersize=4, label=label)
    ax.set_xlabel(f"{RATE} (nats, the rate; min)")
    ax.set_ylabel(selection)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Two fronts at equal rate (hollow: missed the constraints on a seed)", fontsize=10)
    return _save(fig, path)


def fronts_command(reference_dir: str, other_dir: str) -> int:
    """CLI entry: write OTHER/tables/fronts.csv and OTHER/plots/fronts.png and print their paths."""
    table, other = compare_fronts(reference_dir, other_dir)
    root = Path(other_dir)
    (root / "tables").mkdir(exist_ok=True)
    (root / "plots").mkdir(exist_ok=True)
    atomic_write_text(root / "tables" / TABLE, table.to_csv(index=False))
    print(root / "tables" / TABLE)
    print(fronts_plot(table, other.spec.selection.metric, root / "plots" / PLOT))
    return 0
