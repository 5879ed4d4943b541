"""The study's figures as PNG files under ``<study>/plots/`` (matplotlib, Agg backend, written atomically).

objective_per_arm.png: each objective per arm on the confirmation seeds (mean, 95% t-interval, every seed, hollow
where the seed missed the constraints; ticks say "infeasible k/n"), then each constraint metric with its
threshold; learning_curves.png: the objectives and recon coverage over epochs per arm (the confirmed
configuration's runs: mean line, band from the lowest to the highest seed); control_signals.png: rho and the
weights over epochs for the best controller feasible on every seed (else labelled infeasible) and the
seed-literal one (each arm's winner when the study has no controller; the next best controller too when the best
is the seed-literal one; only the spec's arms: an ablation option or a distilled baseline is never an arm);
optimization_history.png: the selection metric of each arm's search trials in the order they started, with the best
feasible value so far (carried over infeasible trials; one panel per arm that has search trials);
concurrency.png: how many trials ran at once over the study's span, against its max_concurrent slots
(``analysis.utilisation``); trajectory_<arm>.png: an adaptive arm against its distilled baselines (mean and 95% t-band
over seeds); pbt_schedule_<arm>.png: a PBT arm's replayed schedule per epoch next to the best controller's
trajectory (if the study has a controller).
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import pandas as pd  # noqa: E402

from diffctl.arms import WEIGHT_NAMES  # noqa: E402
from diffctl.files import atomic_write_bytes  # noqa: E402

from .collapse import controller_trials  # noqa: E402
from .compare import main_arms  # noqa: E402
from .runs import all_feasible, feasible_share, winner_runs  # noqa: E402
from .load import StudyTables  # noqa: E402
from .pbt import schedule_values  # noqa: E402
from .trajectory import adaptive_arms, distilled_of  # noqa: E402
from .utilisation import concurrency_windows, study_utilisation  # noqa: E402

PLOTS_DIR = "plots"
CONCURRENCY_BINS = 120  # windows of concurrency.png
SIGNALS = ("rho_mean", *(f"{w}_mean" for w in WEIGHT_NAMES))


def _save(fig: plt.Figure, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _grid(n: int, width: float = 4.5, height: float = 3.2) -> tuple[plt.Figure, list[plt.Axes]]:
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(width * cols, height * rows), squeeze=False, layout="constrained"
    )
    flat = list(axes.ravel())
    for ax in flat:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs and trial numbers
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _legend(ax: plt.Axes, **options) -> None:
    """A legend when the axes have labelled lines (a study with nothing to draw there has none)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**options)


def _figure_legend(fig: plt.Figure, axes: list[plt.Axes], **options) -> None:
    """One legend for the whole figure, right of the panels (never over the data): every label drawn in any of
    ``axes``, once."""
    handles: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside right upper", **options)


ARM_INCHES = 1.15  # the width of one arm's column in objective_per_arm.png: its label fits under it, level


def _tick_labels(ax: plt.Axes, x, labels: list[str]) -> None:
    """Category labels under the x axis, level, each within its arm's column (the panel is made wide enough:
    :data:`ARM_INCHES` per arm; a long label is wrapped at its underscores)."""
    ax.set_xticks(x, [_wrap(label) for label in labels], fontsize=7)


def _wrap(label: str, width: int = 13) -> str:
    """Each line of ``label`` broken after an underscore where it is longer than ``width`` characters."""
    out = []
    for line in label.split("\n"):
        parts, current = [], ""
        for piece in line.replace("_", "_\0").split("\0"):
            if current and len(current) + len(piece) > width:
                parts.append(current)
                current = ""
            current += piece
        out.append("\n".join([*parts, current]))
    return "\n".join(out)


def _arm_label(tables: StudyTables, arm: str) -> str:
    feasible, seeds = feasible_share(tables, arm)
    return arm if feasible == seeds or not tables.spec.constraints else f"{arm}\ninfeasible {seeds - feasible}/{seeds}"


def objective_per_arm(tables: StudyTables, summary: pd.DataFrame, path: Path) -> Path:
    """Mean and 95% t-interval of each objective per arm on the confirmation seeds, with every seed's value
    (hollow: a seed that missed the constraints), then one panel per constraint metric with its threshold."""
    objectives = tables.spec.tracked_objectives()
    constraints = [c for c in tables.spec.parsed_constraints() if c.metric not in {o.metric for o in objectives}]
    arms = main_arms(tables)  # distilled and ablated runs have plots and tables of their own
    labels = [_arm_label(tables, arm) for arm in arms]
    fig, axes = _grid(len(objectives) + len(constraints), width=max(4.5, ARM_INCHES * len(arms)))
    x = np.arange(len(arms))
    panels = [(o.metric, f"{o.metric} ({o.mode})", None) for o in objectives]
    panels += [(c.metric, f"constraint: {c.text}", c) for c in constraints]
    for ax, (metric, title, constraint) in zip(axes, panels):
        rows = summary[summary["metric"] == metric].set_index("arm").reindex(arms) if metric in set(
            summary["metric"]) else None
        if rows is not None:
            mean = rows["mean"].to_numpy(float)
            err = np.vstack([mean - rows["ci_low"].to_numpy(float), rows["ci_high"].to_numpy(float) - mean])
            ax.errorbar(x, mean, yerr=np.nan_to_num(err), fmt="o", capsize=5, color="black", label="mean, 95% CI")
        for i, arm in enumerate(arms):
            runs = winner_runs(tables, arm)
            values = runs.get(f"final_{metric}", pd.Series(np.nan, index=runs.index)).astype(float)
            ok = runs["feasible"].astype(bool).to_numpy()
            color = f"C{i % 10}"
            ax.scatter(np.full(ok.sum(), i + 0.12), values[ok], s=16, color=color)
            ax.scatter(np.full((~ok).sum(), i + 0.12), values[~ok], s=16, facecolors="none", edgecolors=color)
        for c in tables.spec.parsed_constraints():
            if c.metric == metric:
                ax.axhline(c.threshold, color="tab:red", linestyle="--", linewidth=1, label=c.text)
        _tick_labels(ax, x, labels)
        ax.set_title(title)
    _figure_legend(fig, axes, fontsize=8)
    fig.suptitle("Confirmation seeds, confirmed configuration of each arm (hollow: a seed that missed the constraints)")
    return _save(fig, path)


def learning_curves(tables: StudyTables, path: Path) -> Path:
    """Objectives and recon coverage over epochs: mean over the winner's confirmation runs, min-max band."""
    metrics = [o.metric for o in tables.spec.tracked_objectives()]
    metrics += [m for m in ("recon_coverage_A", "recon_coverage_B") if m not in metrics]
    epochs = tables.epochs
    fig, axes = _grid(len(metrics))
    for arm in tables.arms():
        ids = set(winner_runs(tables, arm)["trial_id"])
        runs = epochs[(epochs["phase"] == "confirm") & (epochs["arm"] == arm) & epochs["trial_id"].isin(ids)]
        for ax, metric in zip(axes, metrics):
            if metric not in runs or runs[metric].isna().all():
                continue
            # only the epochs that have it: a full-set metric is null where eval.full_every skipped the full set
            by_epoch = runs.dropna(subset=[metric]).groupby("epoch")[metric].agg(["mean", "min", "max"])
            line, = ax.plot(by_epoch.index, by_epoch["mean"], marker=".", label=arm)
            ax.fill_between(by_epoch.index, by_epoch["min"], by_epoch["max"], alpha=0.2, color=line.get_color())
    for ax, metric in zip(axes, metrics):
        ax.set_title(metric)
        ax.set_xlabel("epoch")
    _figure_legend(fig, axes, fontsize=8)
    fig.suptitle("Confirmation runs of each arm's confirmed configuration: mean over seeds, band from the lowest to "
                 "the highest seed")
    return _save(fig, path)


def _first_run(tables: StudyTables, trials: pd.DataFrame) -> pd.Series | None:
    """The confirmation run (else the search trial) with the lowest seed among ``trials``, a feasible one first."""
    for phase in ("confirm", "search"):
        chosen = trials[(trials["phase"] == phase) & trials["epochs_done"].gt(0)]
        chosen = chosen.assign(_infeasible=~chosen["feasible"].astype(bool)).sort_values(
            ["_infeasible", "seed", "trial_id"])
        if not chosen.empty:
            return chosen.iloc[0].drop("_infeasible")
    return None


SEED_LITERAL = {"arm.kind": "controller", "arm.regularizer": "none", "arm.objective": "same_loss"}


def controller_ranking(tables: StudyTables) -> list[str]:
    """The spec's controller arms (an ablation option or a distilled baseline is never an arm) by the ranking rule
    on their confirmed configuration's runs: those feasible on every seed first, then by the confirmation mean
    of the selection metric."""
    controllers = set(controller_trials(tables.trials)["arm"]) & set(main_arms(tables))
    selection = tables.spec.selection
    column = f"final_{selection.metric}"
    means = {arm: winner_runs(tables, arm)[column].astype(float).mean() for arm in main_arms(tables)
             if arm in controllers and column in tables.trials}
    means = {arm: m for arm, m in means.items() if m == m}
    sign = 1.0 if selection.mode == "min" else -1.0
    return sorted(means, key=lambda arm: (not all_feasible(tables, arm), sign * means[arm]))


def _controller_label(tables: StudyTables, arm: str, rank: int) -> str:
    title = "best controller" if rank == 0 else "next best controller"
    if all_feasible(tables, arm):
        return f"{title}: {arm}"
    shown, seeds = feasible_share(tables, arm)
    alone = "; no controller feasible on every seed" if rank == 0 else ""
    return f"{title}: {arm} (infeasible {seeds - shown}/{seeds}{alone})"


def best_controller(tables: StudyTables, skip: int = 0) -> tuple[str, pd.Series] | None:
    """(label, its first confirmation run, a feasible one first) of the best controller arm by
    :func:`controller_ranking` (after the first ``skip``), labelled infeasible when it is not feasible on every
    seed; None when the study has no (more) controller."""
    for rank, arm in enumerate(controller_ranking(tables)[skip:], start=skip):
        row = _first_run(tables, winner_runs(tables, arm))
        if row is not None:
            return _controller_label(tables, arm, rank), row
    return None


def signal_trials(tables: StudyTables) -> list[tuple[str, pd.Series]]:
    """(label, trial row) of the best controller (:func:`best_controller`) and the seed-literal controller (when
    they are the same arm: it once, and the next best controller); each arm's winner if none. Seed-literal: a
    spec arm's controller trial without regulariser, trained on the same loss."""
    best = best_controller(tables)
    picked: list[tuple[str, pd.Series]] = [best] if best is not None else []
    literal = controller_trials(tables.trials)
    literal = literal[literal["arm"].isin(main_arms(tables))]
    for key, value in SEED_LITERAL.items():
        literal = literal[literal[key] == value] if key in literal else literal.iloc[0:0]
    row = _first_run(tables, literal)
    if row is not None and best is not None and row["arm"] == best[1]["arm"]:
        # the best controller is the seed-literal one: one line says both, and the next best is drawn beside it
        picked = [(f"{best[0]} (the seed-literal controller)", best[1])]
        if (following := best_controller(tables, skip=1)) is not None:
            picked.append(following)
    elif row is not None:
        picked.append((f"seed-literal: {row['arm']}", row))
    if not picked:
        for arm in tables.arms():
            row = _first_run(tables, winner_runs(tables, arm))
            if row is not None:
                picked.append((f"{arm} (winner)", row))
    return picked


def _records(tables: StudyTables, row: pd.Series) -> pd.DataFrame:
    """The epoch records of one trial (a row of the trials table)."""
    epochs = tables.epochs
    return epochs[(epochs["arm"] == row["arm"]) & (epochs["phase"] == row["phase"])
                  & (epochs["trial_id"] == row["trial_id"])]


def control_signals(tables: StudyTables, path: Path) -> Path:
    """rho_mean and w_*_mean over epochs for the trials of :func:`signal_trials`."""
    fig, axes = _grid(len(SIGNALS))
    for label, row in signal_trials(tables):
        mine = _records(tables, row)
        for ax, signal in zip(axes, SIGNALS):
            if signal in mine:
                ax.plot(mine["epoch"], mine[signal], marker=".", label=f"{label} (seed {row['seed']})")
    for ax, signal in zip(axes, SIGNALS):
        ax.set_title(signal)
        ax.set_xlabel("epoch")
    _figure_legend(fig, axes, fontsize=7)
    return _save(fig, path)


def optimization_history(tables: StudyTables, path: Path) -> Path:
    """Per arm: the selection metric of each search trial in start order and the best feasible so far."""
    selection = tables.spec.selection
    column = f"final_{selection.metric}"
    search = tables.trials[tables.trials["phase"] == "search"]
    arms = [arm for arm in tables.arms() if arm in set(search["arm"])]  # an ablation option or baseline has none
    fig, axes = _grid(max(len(arms), 1))
    for ax, arm in zip(axes, arms):
        mine = search[search["arm"] == arm].sort_values(["started_at", "trial_id"]).reset_index(drop=True)
        values = mine[column].astype(float) if column in mine else pd.Series(np.nan, index=mine.index)
        feasible = mine["feasible"].astype(bool)
        ax.scatter(mine.index[feasible], values[feasible], color="tab:green", label="feasible")
        ax.scatter(mine.index[~feasible], values[~feasible], color="tab:red", marker="x", label="infeasible")
        for i in mine.index[~mine["usable"]]:
            ax.axvline(i, color="tab:red", alpha=0.3, linestyle=":")
        running = values.where(feasible)
        # Carried over infeasible and unfinished trials: the best so far does not end there.
        running = (running.cummin() if selection.mode == "min" else running.cummax()).ffill()
        ax.step(mine.index, running, where="post", color="black", label="best feasible so far")
        ax.set_title(arm)
        ax.set_xlabel("search trial, in start order (dotted: did not finish)")
        ax.set_ylabel(selection.metric)
    _figure_legend(fig, axes, fontsize=7)
    return _save(fig, path)


def concurrency_plot(tables: StudyTables, path: Path) -> Path:
    """How many trials ran at once over the study's span (``analysis.utilisation``): the mean over each of
    :data:`CONCURRENCY_BINS` equal windows, and the most at once in it, against the spec's max_concurrent slots;
    the utilisation in the title."""
    fig, (ax,) = _grid(1, width=9.0, height=3.2)
    bins = concurrency_windows(tables, CONCURRENCY_BINS)
    slots = tables.spec.max_concurrent
    if not bins.empty:
        edges = [*(bins["from_s"] / 60), bins["to_s"].iloc[-1] / 60]
        ax.stairs(bins["max_running"], edges, color="tab:blue", alpha=0.35, label="most trials at once in the window")
        ax.stairs(bins["mean_running"], edges, color="tab:blue", fill=True, alpha=0.5,
                  label="trials running, mean over the window")
    ax.axhline(slots, color="tab:red", linestyle="--", linewidth=1, label=f"max_concurrent ({slots})")
    ax.set_ylim(0, max(slots, int(bins["max_running"].max()) if not bins.empty else 0) + 0.5)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.xaxis.set_major_locator(MaxNLocator())
    ax.set_xlabel("minutes after the first trial started")
    ax.set_ylabel("trials running")
    used = study_utilisation(tables)
    ax.set_title("Trials running at once" + (f": slot utilisation {used.utilisation:.0%}, {used.mean_at_once:.2f} at "
                                              f"once on average" if used is not None else ""))
    _figure_legend(fig, [ax], fontsize=7)
    return _save(fig, path)


def trajectory_plot(tables: StudyTables, arm: str, baselines: dict[str, str], path: Path) -> Path:
    """The selection metric and val exact match A / B over epochs: the arm and its distilled baselines, mean and
    95% t-band over the confirmation seeds."""
    metrics = [tables.spec.selection.metric, "val_exact_match_A", "val_exact_match_B"]
    epochs = tables.epochs
    fig, axes = _grid(len(metrics))
    for label in [arm, *baselines.values()]:
        ids = set(winner_runs(tables, label)["trial_id"])
        runs = epochs[(epochs["arm"] == label) & epochs["trial_id"].isin(ids)]
        for ax, metric in zip(axes, metrics):
            if metric not in runs or runs[metric].isna().all():
                continue
            by_epoch = runs.dropna(subset=[metric]).groupby("epoch")[metric].agg(["mean", "std", "count"])
            half = by_epoch["std"].fillna(0) * stats.t.ppf(0.975, (by_epoch["count"] - 1).clip(lower=1)) \
                / np.sqrt(by_epoch["count"])
            line, = ax.plot(by_epoch.index, by_epoch["mean"], marker=".", label=label)
            ax.fill_between(by_epoch.index, by_epoch["mean"] - half, by_epoch["mean"] + half, alpha=0.15,
                            color=line.get_color())
    for ax, metric in zip(axes, metrics):
        ax.set_title(metric)
        ax.set_xlabel("epoch")
    _figure_legend(fig, axes, fontsize=7)
    fig.suptitle(f"{arm} against its distilled baselines (mean, 95% t-band over seeds)")
    return _save(fig, path)


def pbt_schedule_plot(tables: StudyTables, arm: str, schedule: pd.DataFrame, path: Path) -> Path:
    """A PBT arm's replayed schedule (its best member's rho, weights and lr per epoch) next to the best
    controller's epoch means on its first confirmation seed, if the study has a controller."""
    keys = [k for k in ("rho", *WEIGHT_NAMES, "lr") if k in schedule]
    fig, axes = _grid(len(keys))
    best = best_controller(tables)
    records = _records(tables, best[1]) if best is not None else None
    for ax, key in zip(axes, keys):
        ax.step(schedule["epoch"], schedule[key], where="mid", marker=".", label=f"{arm} schedule (replayed)")
        column = key if key == "lr" else f"{key}_mean"
        if records is not None and column in records:
            ax.plot(records["epoch"], records[column], marker=".", label=f"{best[0]} (seed {best[1]['seed']})")
        ax.set_title(key)
        ax.set_xlabel("epoch")
    _figure_legend(fig, axes, fontsize=7)
    fig.suptitle(f"{arm}: the schedule of its best member, which its confirmation runs replay")
    return _save(fig, path)


def make_plots(tables: StudyTables, summary: pd.DataFrame) -> dict[str, Path]:
    """Write every figure under ``<study>/plots/`` and return their paths by name."""
    out = Path(tables.study_dir) / PLOTS_DIR
    out.mkdir(exist_ok=True)
    plots = {
        "objective_per_arm": objective_per_arm(tables, summary, out / "objective_per_arm.png"),
        "learning_curves": learning_curves(tables, out / "learning_curves.png"),
        "control_signals": control_signals(tables, out / "control_signals.png"),
        "optimization_history": optimization_history(tables, out / "optimization_history.png"),
        "concurrency": concurrency_plot(tables, out / "concurrency.png"),
    }
    for arm in adaptive_arms(tables):
        if baselines := distilled_of(tables, arm):
            plots[f"trajectory_{arm}"] = trajectory_plot(tables, arm, baselines, out / f"trajectory_{arm}.png")
    for arm in tables.pbt_arms():
        if (schedule := schedule_values(tables, arm)) is not None:
            name = f"pbt_schedule_{arm}"
            plots[name] = pbt_schedule_plot(tables, arm, schedule, out / f"{name}.png")
    return plots
