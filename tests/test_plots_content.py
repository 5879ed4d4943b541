"""Each figure of the report draws what its caption says, read back from the matplotlib figure (the published
study's tables: results/open-questions, which has an ablation around its `controller` arm, a PBT arm and 8 spec
arms): the controllers of control_signals.png are spec arms, never ablation labels; optimization_history.png has
no empty panel; objective_per_arm.png's arm labels do not overlap; the legends sit outside the data. And the box
check compares the float32 records at their precision."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
import torch

from analysis import compare, plots, trajectory
from analysis.load import build_tables
from analysis.utilisation import study_utilisation

PUBLISHED = Path(__file__).resolve().parents[1] / "results" / "open-questions"


@pytest.fixture(scope="module")
def tables():
    return build_tables(PUBLISHED)  # read-only: nothing is written into the published study


@pytest.fixture
def drawn(monkeypatch, tmp_path):
    """Call a plot function into tmp_path and return its figure (drawn, not yet closed)."""
    figures = []

    def keep(fig, path):
        fig.canvas.draw()
        figures.append(fig)
        return path

    monkeypatch.setattr(plots, "_save", keep)

    def draw(function, *args):
        function(*args, tmp_path / "plot.png")
        return figures[-1]

    yield draw
    for fig in figures:
        plots.plt.close(fig)


def _labels(fig) -> list[str]:
    return [line.get_label() for ax in fig.axes for line in ax.get_lines() if not line.get_label().startswith("_")]


def _visible(fig):
    return [ax for ax in fig.axes if ax.get_visible()]


def _overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_control_signals_draws_the_confirmed_controllers_not_ablation_labels(tables, drawn):
    """The study's ablation centre (`controller`) is a confirmed controller arm; its options
    (`controller.ablate.*`) are not arms. The best controller feasible on every seed is the seed-literal one
    (`seed_literal`), so the next best on the selection metric (`uncertainty`, feasible on 4 of 16 seeds) is drawn
    beside it."""
    assert tables.spec.ablate is not None and tables.spec.ablate.arm == "controller"
    assert any(".ablate." in arm for arm in tables.arms())  # the labels that were taken for arms
    fig = drawn(plots.control_signals, tables)
    drawn_arms = {row["arm"] for _, row in plots.signal_trials(tables)}
    assert drawn_arms == {"seed_literal", "uncertainty"}
    labels = _labels(fig)
    assert not any(".ablate." in label for label in labels), labels
    rho = _visible(fig)[0]
    assert rho.get_title() == "rho_mean" and len(rho.get_lines()) == 2
    shown = [line.get_label() for line in rho.get_lines()]
    assert shown[0].startswith("best controller: seed_literal (the seed-literal controller)"), shown
    assert shown[1].startswith("next best controller: uncertainty (infeasible "), shown
    for ax in _visible(fig):  # every signal panel draws both
        assert len(ax.get_lines()) == 2, ax.get_title()
    assert fig.legends and not any(ax.get_legend() for ax in fig.axes)  # one legend, outside the panels


def test_optimization_history_has_one_panel_per_searched_arm_and_none_empty(tables, drawn):
    fig = drawn(plots.optimization_history, tables)
    searched = set(tables.trials.loc[tables.trials["phase"] == "search", "arm"])
    panels = _visible(fig)
    assert [ax.get_title() for ax in panels] == [arm for arm in tables.spec.arms if arm in searched]
    assert len(panels) == 8 and len(fig.axes) == 9  # a 3 x 3 grid, the last cell hidden
    for ax in panels:
        points = sum(len(c.get_offsets()) for c in ax.collections)
        assert points == int((tables.trials["phase"].eq("search") & tables.trials["arm"].eq(ax.get_title())).sum())


def test_objective_per_arm_labels_do_not_overlap(tables, drawn):
    fig = drawn(plots.objective_per_arm, tables, compare.confirm_summary(tables))
    renderer = fig.canvas.get_renderer()
    panels = _visible(fig)
    assert len(panels) == len(tables.spec.tracked_objectives()) + 2  # two constraint metrics
    for ax in panels:
        ticks = [t for t in ax.get_xticklabels() if t.get_text()]
        assert [t.get_text() for t in ticks] == [plots._wrap(plots._arm_label(tables, arm))
                                                 for arm in compare.main_arms(tables)]
        assert all(t.get_rotation() == 0 for t in ticks)  # level: their boxes are the text's own
        boxes = [t.get_window_extent(renderer) for t in ticks]
        assert not any(_overlap(a, b) for a, b in combinations(boxes, 2)), ax.get_title()
    legend = fig.legends[0].get_window_extent(renderer)
    assert not any(_overlap(legend, ax.get_window_extent(renderer)) for ax in panels)


def test_learning_curves_legend_is_outside_the_data(tables, drawn):
    fig = drawn(plots.learning_curves, tables)
    renderer = fig.canvas.get_renderer()
    assert not any(ax.get_legend() for ax in fig.axes) and len(fig.legends) == 1
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == compare.main_arms(tables)  # every arm once
    box = legend.get_window_extent(renderer)
    assert not any(_overlap(box, ax.get_window_extent(renderer)) for ax in _visible(fig))


def test_concurrency_plot_draws_the_slots_and_the_utilisation(tables, drawn):
    fig = drawn(plots.concurrency_plot, tables)
    (ax,) = _visible(fig)
    used = study_utilisation(tables)
    assert used.slots == 2 and used.utilisation > 0.85  # the published study kept its 2 slots busy
    assert f"slot utilisation {used.utilisation:.0%}" in ax.get_title()
    assert [line.get_label() for line in ax.get_lines()] == ["max_concurrent (2)"]
    assert ax.get_lines()[0].get_ydata()[0] == 2


def _float32_epoch_mean(value: float, steps: int) -> float:
    """A weight's epoch mean as diffctl.train records it: each step's float32 value summed in float32."""
    total = torch.zeros(())
    for _ in range(steps):
        total += torch.tensor(value, dtype=torch.float32)
    return float(total / steps)


@pytest.mark.parametrize("steps", [10, 40, 300])
def test_the_box_check_compares_at_the_records_precision(tables, monkeypatch, steps):
    """A fixed rho of 0.1, recorded as a float32 epoch mean, is inside the box [0.1, 0.1] of a reference arm that
    holds it at 0.1; 0.1001 is not."""
    recorded = _float32_epoch_mean(0.1, steps)
    assert recorded != 0.1  # float32 rounding: 1e-9 of tolerance called it outside
    assert trajectory.within(recorded, 0.1, 0.1) and trajectory.within(np.float32(0.005), 0.005, 1.0)
    assert not trajectory.within(0.1001, 0.1, 0.1) and not trajectory.within(0.0999, 0.1, 0.1)
    arm = trajectory.adaptive_arms(tables)[0]
    monkeypatch.setattr(trajectory, "adaptive_arms", lambda t: [arm])
    monkeypatch.setattr(trajectory, "_signal_values", lambda t, a: {"rho": (recorded, 0.1001)})
    monkeypatch.setattr(trajectory, "reference_box", lambda t, key: (0.1, 0.1))
    box = trajectory.box_check(tables)
    assert box.set_index("statistic")["inside"].to_dict() == {"last epoch": True, "whole run": False}
    assert trajectory.outside_box(tables, box, arm) == ["rho 0.1 (whole run) outside `fixed` box [0.1, 0.1]"]
