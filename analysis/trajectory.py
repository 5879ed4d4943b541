"""Trajectory or destination: what an adaptive arm contributes beyond the weights it ends at, and whether the
fixed-lambda search could have reached those weights at all.

**Box check.** For every adaptive arm, the epoch means of its weights and rho on its confirmation runs (the
last epoch's and the whole run's, averaged over seeds) against the reference arm's search box: a key the
reference searches has its [low, high]; a key it does not search counts as its constant. A value outside means
that "beats tuned fixed λ" would only say "the fixed search could not go there".

**Three levels.** The arm against its distilled baselines (``study.phases.distill``), paired by seed at every budget
on the selection metric, Holm-corrected over the three baselines at each budget:

- ``destination only``: a constant baseline (``final`` or ``mean``) is equivalent at every budget;
- ``schedule``: better than both constants at some budget, and the open-loop replay is equivalent at every
  budget (the arm found a schedule; its feedback adds nothing);
- ``feedback``: better than both constants and than its own replay at some budget;
- ``inconclusive`` otherwise, with the budgets where it differs from a baseline.
"""

from __future__ import annotations

import math

import pandas as pd

from diffctl.arms.piecewise import CONTROL_KEYS
from study.protocol.plan import STILL_KINDS
from study.protocol.schema import FloatDistribution, IntDistribution

from .compare import main_arms, paired_table
from .runs import winner_runs
from .load import StudyTables
from .stats import BETTER, EQUIVALENT

CONSTANTS, REPLAY = ("final", "mean"), "replay"
DESTINATION, SCHEDULE, FEEDBACK, INCONCLUSIVE = "destination only", "schedule", "feedback", "inconclusive"


def distilled_of(tables: StudyTables, arm: str) -> dict[str, str]:
    """variant -> label of the arm's distilled baselines found in the study."""
    trials = tables.trials
    if "source_arm" not in trials or "distill" not in trials:
        return {}
    rows = trials[(trials["phase"] == "distill") & (trials["source_arm"] == arm)].dropna(subset=["distill"])
    return {str(variant): str(label) for label, variant in rows.groupby("arm", sort=False)["distill"].first().items()}


def adaptive_arms(tables: StudyTables) -> list[str]:
    """Spec arms whose weights or rho can move (the kinds the study distils), by the kind of their confirmation
    runs (a PBT arm's replay a piecewise schedule), else of their search trials."""
    trials = tables.trials
    if "arm.kind" not in trials:
        return []
    confirmed = trials[trials["phase"] == "confirm"].groupby("arm")["arm.kind"].first()
    kinds = confirmed.combine_first(trials.groupby("arm")["arm.kind"].first())
    return [a for a in main_arms(tables) if a in kinds and kinds[a] not in STILL_KINDS]


def _signal_values(tables: StudyTables, arm: str) -> dict[str, tuple[float, float]]:
    """control key -> (last epoch's mean, whole run's mean) over the arm's finished representing runs."""
    runs = winner_runs(tables, arm)
    ids = set(runs.loc[runs["usable"], "trial_id"])
    epochs = tables.epochs
    mine = epochs[(epochs["arm"] == arm) & epochs["trial_id"].isin(ids)]
    mine = mine[mine["status"] == "ok"] if "status" in mine else mine
    values = {}
    for key in CONTROL_KEYS:
        columns = [c for c in (f"{key}_A_mean", f"{key}_B_mean") if c in mine] or \
            ([f"{key}_mean"] if f"{key}_mean" in mine else [])
        for column in columns:
            if mine[column].isna().all():
                continue
            last = mine.loc[mine.groupby("trial_id")["epoch"].idxmax(), column].astype(float).mean()
            whole = mine.groupby("trial_id")[column].mean().astype(float).mean()
            name = key if column == f"{key}_mean" else f"{key}_{column.split('_')[-2]}"
            values[name] = (float(last), float(whole))
    return values


def reference_box(tables: StudyTables, key: str) -> tuple[float, float] | None:
    """[low, high] the reference arm could give ``key`` (a weight or rho): its search range, else its constant;
    None where it has neither (a reference whose weights move, such as a controller arm's)."""
    reference = tables.reference_arm()
    if reference is None:
        return None
    dist = tables.spec.arms[reference].space.get(f"arm.{key}") if reference in tables.spec.arms else None
    if isinstance(dist, (FloatDistribution, IntDistribution)):
        return float(dist.low), float(dist.high)
    column = f"arm.{key}"
    values = tables.trials.loc[tables.trials["arm"] == reference, column].dropna() if column in tables.trials else []
    numbers = {float(v) for v in values if isinstance(v, (int, float))}
    return (min(numbers), max(numbers)) if numbers else None


# The records' weights and rho are float32 epoch means (``diffctl.train`` sums each step's float32 value in float32
# and divides by the steps), so a constant 0.1 is recorded as 0.1 plus a few float32 ulps, more the more steps an
# epoch has (measured: +22 ulps after 300 steps). A value counts as inside its box within this relative tolerance
# of the bound it is compared with (about 84 float32 ulps; 1e-9, the tolerance before, called a fixed rho of 0.1
# outside [0.1, 0.1]).
BOX_RTOL = 1e-5


def within(value: float, low: float, high: float) -> bool:
    """``low <= value <= high`` at the records' precision (:data:`BOX_RTOL` of the bound compared with)."""
    return (value >= low - BOX_RTOL * max(abs(low), abs(value))
            and value <= high + BOX_RTOL * max(abs(high), abs(value)))


def box_check(tables: StudyTables) -> pd.DataFrame:
    """One row per adaptive arm other than the reference, control key with a box and statistic (last epoch, whole
    run): the reference, value, box, inside."""
    rows = []
    reference = tables.reference_arm()
    for arm in [a for a in adaptive_arms(tables) if a != reference]:
        for name, (last, whole) in _signal_values(tables, arm).items():
            box = reference_box(tables, name.split("_A")[0].split("_B")[0] if name.startswith("w_") else name)
            if box is None:  # the reference holds no constant of this key and does not search it: no box
                continue
            for stat, value in (("last epoch", last), ("whole run", whole)):
                inside = box is not None and within(value, *box)
                rows.append({"arm": arm, "reference": reference, "key": name, "statistic": stat, "value": value,
                             "box_low": box[0] if box else math.nan, "box_high": box[1] if box else math.nan,
                             "inside": inside})
    return pd.DataFrame(rows, columns=["arm", "reference", "key", "statistic", "value", "box_low", "box_high",
                                       "inside"])


def outside_box(tables: StudyTables, box: pd.DataFrame, arm: str) -> list[str]:
    """The arm's values outside the reference box, in words (``w_rank 13.4 outside `fixed` box [0.05, 2]``)."""
    if box.empty:
        return []
    out = box[(box["arm"] == arm) & ~box["inside"]]
    return [f"{r.key} {r.value:.3g} ({r.statistic}) outside `{r.reference}` box [{r.box_low:.3g}, {r.box_high:.3g}]"
            for r in out.itertuples()]


def paired_vs_distilled(tables: StudyTables) -> pd.DataFrame:
    """Every adaptive arm against each of its distilled baselines, at every budget (one Holm family per arm,
    budget and metric: its three baselines)."""
    pairs = [(arm, label) for arm in adaptive_arms(tables) for label in distilled_of(tables, arm).values()]
    return paired_table(tables, pairs, ["arm", "budget", "metric"])


def levels(tables: StudyTables, paired: pd.DataFrame) -> pd.DataFrame:
    """The level of every adaptive arm with distilled baselines, judged on the selection metric."""
    metric = tables.spec.selection.metric
    rows = []
    for arm in adaptive_arms(tables):
        baselines = distilled_of(tables, arm)
        mine = paired[(paired["arm"] == arm) & (paired["metric"] == metric)] if not paired.empty else paired
        if mine.empty:
            continue
        verdicts = {variant: mine[mine["reference"] == label].set_index("budget")["verdict"]
                    for variant, label in baselines.items()}
        budgets = sorted(mine["budget"].unique())

        def better_at(variants):
            return [b for b in budgets if all(verdicts.get(v, pd.Series(dtype=str)).get(b) == BETTER for v in variants)]

        def equivalent_throughout(variant):
            v = verdicts.get(variant)
            return v is not None and len(v) == len(budgets) and (v == EQUIVALENT).all()

        constants = [v for v in CONSTANTS if v in verdicts]
        beats_constants = better_at(constants) if constants else []
        beats_replay = better_at([*constants, REPLAY]) if REPLAY in verdicts and constants else []
        if beats_replay:
            level = FEEDBACK
        elif beats_constants and equivalent_throughout(REPLAY):
            level = SCHEDULE
        elif any(equivalent_throughout(v) for v in constants):
            level = DESTINATION
        else:
            level = INCONCLUSIVE
        differs = [f"{verdict} than `{variant}` at {b:.0%} of the epochs" for variant, series in verdicts.items()
                   for b, verdict in series.items() if verdict not in (EQUIVALENT, "inconclusive", "not tested")]
        rows.append({"arm": arm, "level": level, "better_than_constants_at": ",".join(f"{b:g}" for b in beats_constants),
                     "better_than_replay_at": ",".join(f"{b:g}" for b in beats_replay), "differs": "; ".join(differs)})
    return pd.DataFrame(rows, columns=["arm", "level", "better_than_constants_at", "better_than_replay_at", "differs"])


def level_lines(tables: StudyTables, table: pd.DataFrame) -> list[str]:
    """One Conclusions line per adaptive arm: its level and where it differs from a baseline."""
    metric = tables.spec.selection.metric
    return [f"- Trajectory or destination, `{row.arm}` on {metric}: **{row.level}**"
            + (f" ({row.differs})." if row.differs else " (different from none of its distilled baselines).")
            for row in table.itertuples()]
