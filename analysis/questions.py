"""The seed's open questions, answered from the search trials that varied them.

For each design axis (rho granularity, statistics, weight regulariser, warm-up, plus the controller's
objective and where its statistics come from) and each arm whose search varied it: a table grouped by
option, Optuna's parameter importance of the axis in that arm's study, and a one-line answer. The rule: the
Kruskal-Wallis statistic of the selection metric across the options with at least ``MIN_GROUP`` distinct
finished configurations, its p-value by permutation (``scipy.stats.permutation_test``: exact when the
relabellings are few, else ``PERMUTATIONS`` seeded resamples; the large-sample chi-square p-value is far off for
groups of 2-3); below ``ALPHA`` the option with the best median is named, otherwise the answer is "no difference
detected", and with too few configurations "not tested". Trials with identical parameters (TPE may draw a
configuration twice; the search seed is the same) are one piece of evidence, not several. Search trials are
sampled by TPE, so options also differ in the other sampled parameters: the answers are observational; an
ablation around the confirmed configuration is the causal test.
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path

import pandas as pd
from scipy import stats

from diffctl.errors import one_line
from study.journal import JOURNAL_FILE

from .load import StudyTables
from .stats import ALPHA, NOT_TESTED

QUESTIONS = {
    "arm.rho_granularity": "rho per sample vs per batch",
    "arm.stats": "which statistics feed the controller",
    "arm.regularizer": "regularising the weights",
    "arm.warmup": "warm-up",
    "arm.objective": "controller objective: same loss vs lookahead",
    "arm.stats_source": "where the statistics come from",
}
MIN_GROUP = 3
MIN_IMPORTANCE_TRIALS = 10  # Optuna's importances of an arm with fewer complete trials are not shown
PERMUTATIONS = 9999
NO_DIFFERENCE = "no difference detected"
DEFAULT_OPTION = "(default)"


def _option(value):
    return DEFAULT_OPTION if value is None or value != value else value


def _varied(tables: StudyTables) -> list[tuple[str, str, pd.DataFrame]]:
    """(question key, arm, its search trials) for every arm whose search tried two or more options."""
    trials = tables.trials[tables.trials["phase"] == "search"]
    found = []
    for key in QUESTIONS:
        if key not in trials:
            continue
        for arm in tables.arms():
            # An option left at its default is stored as null: it is an option of its own. A configuration drawn
            # twice trains identically (same search seed): it counts once.
            mine = trials[trials["arm"] == arm].sort_values("trial_id").drop_duplicates("params")
            group = mine.assign(**{key: lambda g: g[key].map(_option)})
            if group[key].nunique() >= 2:
                found.append((key, arm, group))
    return found


def grouped_table(tables: StudyTables, collapse: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per question, arm and option: trials, finished, feasible, diverged, collapsed, metric medians/means."""
    metrics = [f"final_{o.metric}" for o in tables.spec.tracked_objectives()]
    collapsed = set() if collapse is None or collapse.empty else set(
        collapse.loc[collapse["collapsed"], "trial_id"])
    rows = []
    for key, arm, group in _varied(tables):
        for option, members in group.groupby(key, sort=True):
            usable = members[members["usable"]]
            row = {"question": QUESTIONS[key], "key": key, "arm": arm, "option": option,
                   "trials": len(members), "finished": len(usable), "feasible": int(members["feasible"].sum()),
                   "diverged": int(members["diverged"].sum()),
                   "collapsed": int(members["trial_id"].isin(collapsed).sum())}
            for column in metrics:
                values = usable[column].astype(float) if column in usable else pd.Series(dtype=float)
                row[f"median_{column.removeprefix('final_')}"] = values.median()
                row[f"mean_{column.removeprefix('final_')}"] = values.mean()
            rows.append(row)
    return pd.DataFrame(rows)


def answer_axis(groups: dict[str, list[float]], metric: str, mode: str) -> tuple[float, str]:
    """(p value, one-line answer) comparing the metric across options (Kruskal-Wallis, p < ALPHA)."""
    tested = {k: [v for v in vs if not math.isnan(v)] for k, vs in groups.items()}
    tested = {k: vs for k, vs in tested.items() if len(vs) >= MIN_GROUP}
    n = sum(len(vs) for vs in tested.values())
    if len(tested) < 2:
        return math.nan, (f"{NOT_TESTED} (fewer than 2 options with >= {MIN_GROUP} distinct finished "
                          f"configurations)")
    p = kruskal_permutation_p(list(tested.values()))
    if math.isnan(p) or p >= ALPHA:
        return p, f"{NO_DIFFERENCE} on {metric} (Kruskal-Wallis, permutation p = {p:.3g}, n = {n})"
    medians = {k: float(pd.Series(vs).median()) for k, vs in tested.items()}
    best = (min if mode == "min" else max)(medians, key=medians.get)
    shown = ", ".join(f"{k} {v:.4g}" for k, v in sorted(medians.items(), key=lambda kv: kv[1]))
    return p, f"`{best}` is best on {metric} (medians: {shown}; Kruskal-Wallis, permutation p = {p:.3g}, n = {n})"


def kruskal_permutation_p(groups: list[list[float]]) -> float:
    """The p-value of the Kruskal-Wallis statistic under relabelling of the pooled values (exact when the
    distinct relabellings number fewer than ``PERMUTATIONS``); 1 when every value is identical."""
    if len({v for g in groups for v in g}) < 2:
        return 1.0  # nothing separates the options

    def statistic(*samples):
        return stats.kruskal(*samples).statistic

    result = stats.permutation_test(groups, statistic, permutation_type="independent", alternative="greater",
                                    n_resamples=PERMUTATIONS, rng=0)
    return float(result.pvalue)


def param_importances(tables: StudyTables) -> tuple[pd.DataFrame, dict[str, str]]:
    """Optuna's parameter importances per arm (PED-ANOVA; the Pareto front when several objectives).

    Returns the table (arm, param, importance) and a note per arm where they could not be computed.
    """
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path = Path(tables.study_dir) / JOURNAL_FILE
    rows, notes = [], {}
    empty = pd.DataFrame(columns=["arm", "param", "importance"])
    if not path.is_file():
        return empty, {"*": f"no {JOURNAL_FILE}"}
    optuna.logging.set_verbosity(logging.WARNING)
    try:  # a damaged journal costs the importances, not the analysis
        storage = JournalStorage(JournalFileBackend(str(path)))
    except Exception as exc:
        return empty, {"*": f"{JOURNAL_FILE} unreadable: {one_line(exc)[:160]}"}
    for arm in tables.spec.arms:  # a derived arm (distilled baseline, ablation option) has no Optuna study
        if arm in tables.pbt_arms():
            notes[arm] = "population based training: no Optuna study"
            continue
        try:
            study = optuna.load_study(study_name=arm, storage=storage)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                importances = optuna.importance.get_param_importances(study)
            complete = len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)))
            if any("too small" in str(w.message) for w in caught) or complete < MIN_IMPORTANCE_TRIALS:
                notes[arm] = f"too few complete trials ({complete} < {MIN_IMPORTANCE_TRIALS}) for importances"
                continue
        except Exception as exc:  # a missing study or too few trials must not stop the analysis
            notes[arm] = f"importances unavailable: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
            continue
        rows += [{"arm": arm, "param": k, "importance": float(v)} for k, v in importances.items()]
    return pd.DataFrame(rows, columns=empty.columns), notes


def answers(tables: StudyTables, importances: pd.DataFrame) -> pd.DataFrame:
    """One row per question and arm that varied it (or one 'not studied' row): the test and the answer."""
    selection = tables.spec.selection
    column = f"final_{selection.metric}"
    varied = _varied(tables)
    rows = []
    for key, title in QUESTIONS.items():
        mine = [(arm, group) for k, arm, group in varied if k == key]
        if not mine:
            rows.append({"question": title, "key": key, "arm": None, "options": "", "p_value": math.nan,
                         "importance": math.nan, "answer": f"not studied: no arm's search varied {key}"})
            continue
        for arm, group in mine:
            usable = group[group["usable"]]
            groups = {str(k): g[column].astype(float).to_list() for k, g in usable.groupby(key)} \
                if column in usable else {}
            p, text = answer_axis(groups, selection.metric, selection.mode)
            # An importance is shown only beside a tested axis (one sampled once or twice says nothing).
            match = importances[(importances["arm"] == arm) & (importances["param"] == key)] \
                if not math.isnan(p) else importances.iloc[0:0]
            rows.append({"question": title, "key": key, "arm": arm,
                         "options": ", ".join(sorted(str(v) for v in group[key].unique())),
                         "p_value": p, "importance": float(match["importance"].iloc[0]) if len(match) else math.nan,
                         "answer": text})
    return pd.DataFrame(rows)
