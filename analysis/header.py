"""The report's header lines: which code ran the trials (``diffctl.provenance``), with a warning on a dirty tree
or mixed versions, and what the metrics measure on this data (triplet r's ceiling, the untied concordance, the
negative ELBO as rate plus what reconstruction misses).
"""

from __future__ import annotations

import math

import pandas as pd

from diffctl.provenance import describe

from .load import StudyTables

ELBO_FLOOR = 2 * 9 * math.log(3)  # nats: two VAEs that ignore their input and predict every trit uniformly


def metric_notes(tables: StudyTables) -> str:
    """What the metrics measure on this data: triplet r's ceiling and the untied concordance (with the tie share
    measured in this study's records), and what the negative ELBO is for a run that reconstructs."""
    epochs = tables.epochs
    shares = [epochs[c].dropna().astype(float) for c in ("triplet_tie_share_A", "triplet_tie_share_B") if c in epochs]
    share = float(pd.concat(shares).mean()) if shares and any(len(s) for s in shares) else math.nan
    measured = f"{share:.1%} in this study's records" if share == share else "about 50% (not recorded here)"
    return (f"Metrics. `triplet_r` (upstream's triplet concordance) scores a tied triple (v3(i−j) = v3(i−k): "
            f"{measured}) right about half the time for any embedding, so its ceiling is 0.5 s + (1 − s) ≈ 0.75 for a "
            "tie share s; `triplet_untied` scores the untied triples alone (ceiling 1.0, random 0.5), and r = s × "
            "(agreement on tied triples) + (1 − s) × untied. `val_loss_unweighted` is the negative ELBO of the pair: "
            "for a run that reconstructs it is essentially its rate (the KL nats its codes use, `kl_A` + `kl_B`) plus "
            f"what reconstruction still misses; its floor, 2 × 9 ln 3 ≈ {ELBO_FLOOR:.1f} nats, belongs to a model "
            "that ignores its input. Worse on the ELBO, for an arm that reconstructs, means its codes use more nats.")


def code_line(tables: StudyTables) -> str:
    """Which code ran the trials (``diffctl.provenance``), with a warning when no commit holds it."""
    trials = tables.trials
    if "code_commit" not in trials or trials["code_commit"].isna().all():
        return "Code: not recorded (the trials ran outside a git checkout, or before diffctl recorded it)."
    versions = trials[["code_commit", "code_dirty", "code_diff_sha256"]].drop_duplicates()
    shown = "; ".join(describe({"commit": c, "dirty": bool(d), "diff_sha256": h})
                      for c, d, h in versions.itertuples(index=False) if isinstance(c, str))
    mixed = trials.get("mixed_code", pd.Series(False, index=trials.index)).fillna(False).astype(bool).any()
    text = f"Code: the trials ran from {shown}"
    if versions["code_dirty"].fillna(False).astype(bool).any():
        text += (". **Warning: a dirty tree** — no commit holds the code that ran some trials; the numbers cannot be "
                 "reproduced from a commit")
    if len(versions) > 1 or mixed:
        text += ". **Warning:** the trials ran from more than one version of the code"
    return text + "."
