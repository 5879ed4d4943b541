"""The PBT arms of a study (``study.phases.pbt``) as the analysis reads them from their files: the lineage of every
exploit (``tables/pbt_lineage.csv``), the replayed schedule per epoch, and the report's section on them with the
cost accounting (a population of ``budget`` members x epochs, against ``budget`` x epochs of every Optuna arm).

Example::

    lineage_table(build_tables("results/quick"))   # arm, member, epoch, source_trial, before_arm.rho, ...
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from study.trialdir import schedule_file

from .load import StudyTables, trial_info

LINEAGE_COLUMNS = ["arm", "member", "epoch", "source_trial"]


def members(tables: StudyTables, arm: str) -> pd.DataFrame:
    """The search trials (members) of a PBT arm."""
    trials = tables.trials
    return trials[(trials["phase"] == "search") & (trials["arm"] == arm)]


def lineage_table(tables: StudyTables) -> pd.DataFrame:
    """One row per exploit of every PBT arm: the member, the epoch of the state it took, the member it took it
    from, and each mutated key's value before and after (``before_<key>``, ``after_<key>``)."""
    rows = []
    for arm in tables.pbt_arms():
        for _, member in members(tables, arm).iterrows():
            info = trial_info(tables, member)
            for exploit in info.exploits or []:
                row = {"arm": arm, "member": info.trial_id, "epoch": exploit["epoch"],
                       "source_trial": exploit["source_trial"]}
                row.update({f"before_{k}": v for k, v in exploit["before"].items()})
                row.update({f"after_{k}": v for k, v in exploit["after"].items()})
                rows.append(row)
    return pd.DataFrame(rows, columns=list(dict.fromkeys([*LINEAGE_COLUMNS, *(k for r in rows for k in r)])))


def schedule_path(tables: StudyTables, arm: str, replicate: int = 0) -> Path:
    return tables.study_dir / "search" / arm / schedule_file(replicate)


def schedule_values(tables: StudyTables, arm: str, replicate: int = 0) -> pd.DataFrame | None:
    """A PBT arm's schedule (its best member's, ``schedule-r<k>.yaml``, as its confirmation runs replay it) per
    epoch: rho, each weight (a pair as its mean) and lr where it sets one; None when it confirmed nothing (no
    member ran every epoch)."""
    trials = tables.trials
    runs = trials[(trials["phase"] == "confirm") & (trials["arm"] == arm) & (trials["replicate"] == replicate)]
    if runs.empty:
        return None
    segments = json.loads(runs["config_json"].iloc[0])["arm"]["segments"]
    rows = []
    for epoch in range(1, tables.spec.epochs + 1):
        segment = next(s for s in segments if s["until_epoch"] is None or s["until_epoch"] >= epoch)
        values = {k: float(np.mean(v)) for k, v in segment.items() if k != "until_epoch" and v is not None}
        rows.append({"epoch": epoch, **values})
    return pd.DataFrame(rows)


def pbt_section(tables: StudyTables, lineage: pd.DataFrame) -> str:
    """The report's lines on the PBT arms: population, exploits, best member and schedule, and the cost."""
    arms = tables.pbt_arms()
    if not arms:
        return "No PBT arm in this study (an arm with `search: pbt` trains a population).\n"
    epochs = tables.spec.epochs
    lines = []
    for arm in arms:
        population = tables.spec.arms[arm].budget
        mine = lineage[lineage["arm"] == arm] if not lineage.empty else lineage
        exploited = mine["member"].nunique() if not mine.empty else 0
        confirmed = tables.trials[(tables.trials["phase"] == "confirm") & (tables.trials["arm"] == arm)]
        best = confirmed["source_trial"].dropna().iloc[0] if not confirmed.empty else None
        schedule = schedule_path(tables, arm).relative_to(tables.study_dir).as_posix()
        lines.append(f"- `{arm}`: population {population} x {epochs} epochs = {population * epochs} trial-epochs "
                     f"per replicate; {len(mine)} exploit(s) by {exploited} member(s). "
                     + (f"Best member `{best}`; its schedule (`{schedule}` in the study directory, the arm section "
                        "of its confirmation runs' configs) is what they replay." if best is not None
                        else "No member ran every epoch: nothing confirmed."))
    others = [f"`{arm}` {spec.budget} x {epochs} = {spec.budget * epochs}"
              for arm, spec in tables.spec.arms.items() if arm not in arms]
    if others:
        lines.append("- Equal compute: the other arms' searches cost (budget x epochs trial-epochs) "
                     + ", ".join(others) + ".")
    return "\n".join(lines) + "\n"
