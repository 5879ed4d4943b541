"""Study directory -> two pandas tables, read from the files the study wrote (no running Ray).

``trials``: one row per trial of every phase (``search``, ``confirm``, ``distill``, ``ablate``; the phase
column says which): arm, phase, trial id, seed, status, wall time, every config key flattened into a dotted column (``optim.lr``, ``arm.kind``), ``final_<field>`` for every numeric
field of the last finished epoch, ``best_<metric>`` over epochs for each objective, and the flags
``diverged`` / ``errored`` / ``restarted`` / ``usable`` / ``feasible``. ``feasible`` is judged on the split
``feasible_split`` names: ``test`` for a confirmation, distilled or ablation run that evaluated the test split
(``eval.test_split``: each constraint on a ``val_`` field, or ``kl``, read on its test counterpart,
``val_exact_match_A >= 0.9`` as ``test_exact_match_A >= 0.9``; one on a field without one, such as
``recon_coverage_A`` over all operations, as written), else ``val``; ``feasible_val`` is judged on val for every
trial (what the study's own decisions saw; the analysis's picks rank on it). ``epochs``: one row per trial-epoch with
every record field. ``trial.json`` is read with the study's own model of it (``study.trialdir.TrialInfo``), the
spec with the study's own reader (``study.protocol``). Diverged, errored and unfinished trials are kept and flagged, never dropped.

Example::

    tables = load("results/quick")
    tables.trials.query("phase == 'confirm'").groupby("arm")["final_triplet_r_A"].mean()
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from diffctl.config import config_from_dict, read_yaml_file
from diffctl.errors import InputError
from diffctl.metrics import counterpart_on_test
from diffctl.files import atomic_write_bytes
from study.protocol import SPEC_FILE, StudySpec, saved_spec
from study.protocol.configs import arm_kind
from study.protocol.constraints import is_number
from study.protocol.errors import shown
from study.protocol.plan import FRONT, PHASES, TEST_SPLIT_PHASES
from study.state import is_published
from study.trialdir import METRICS_FILE, TRIAL_FILE, Session, TrialInfo, parse_info, read_info, read_metrics

USABLE_STATUSES = ("ok", "stopped")
ID_COLUMNS = ["arm", "phase", "trial_id"]
TRIALS_FILE, EPOCHS_FILE = "trials.parquet", "epochs.parquet"
# The record fields that hold text (diffctl.train); every other field is a number, or null where it was not finite.
TEXT_FIELDS = ("status", "reason")
INT64 = 2**63  # Parquet stores integers in 64 bits
# The phases whose runs are judged feasible on the test split (when they evaluated it): the confirmed runs and
# those made from them, which the Conclusions report. The rest stand for search decisions and keep val.
TEST_JUDGED_PHASES = tuple(p for p in TEST_SPLIT_PHASES if p != FRONT)  # a front run competes for a pick: val


@dataclass
class StudyTables:
    """The spec and the two tables of one study directory."""

    study_dir: Path
    spec: StudySpec
    trials: pd.DataFrame
    epochs: pd.DataFrame
    published: bool = False  # read from the Parquet tables of a published study (no trial directories)

    def __iter__(self):
        """Unpack as ``trials, epochs = load(study_dir)``."""
        return iter((self.trials, self.epochs))

    def reference_arm(self) -> str | None:
        """The arm every other arm is compared with, by the study's own rule (``StudySpec.reference_arm``): the
        spec's ``reference``, else the first arm (spec order) not searched by PBT whose config trains ``arm.kind:
        fixed``; None for a study saved without either."""
        reference = self.spec.reference_arm()
        return reference if reference in self.spec.arms else None

    fixed_arm = reference_arm  # its name while the reference could only be the fixed-λ arm

    def shown_dir(self) -> str:
        """The study directory as the report and an export name it: relative to the working directory when it
        lies under it (``results/open-questions``), else its name alone — never an absolute path of the machine
        that analysed it."""
        directory = self.study_dir.absolute()
        try:
            return directory.relative_to(Path.cwd().absolute()).as_posix() or "."
        except ValueError:
            return directory.name

    def reference_text(self) -> str:
        """The reference as the report names it: ``fixed-λ reference arm `fixed``` when it trains fixed λ (and is
        no PBT arm), else ``reference arm `ctl` (controller)``; "no reference arm" without one."""
        reference = self.reference_arm()
        if reference is None:
            return "no reference arm"
        if reference in self.pbt_arms():
            return f"reference arm `{reference}` (population based training)"
        kind = arm_kind(self.spec, reference)
        return f"fixed-λ reference arm `{reference}`" if kind == "fixed" else f"reference arm `{reference}` ({kind})"

    def pbt_arms(self) -> list[str]:
        """The arms searched by population based training (``study.phases.pbt``), in spec order."""
        return [label for label, arm in self.spec.arms.items() if arm.is_pbt]

    def arms(self) -> list[str]:
        """Arms in spec order, then any arm found on disk but missing from the spec."""
        seen = list(self.spec.arms)
        return seen + sorted(set(self.trials["arm"]) - set(seen))


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> ``{"section.key": value}``; lists become comma-joined strings so that they group."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            flat[name] = ",".join(str(v) for v in value)
        else:
            flat[name] = value
    return flat


def _has_type(value: Any, kinds: tuple[type, ...]) -> bool:
    """isinstance, except that a bool is no number (JSON tells them apart) and an integer must fit Parquet."""
    if isinstance(value, bool):
        return bool in kinds
    if isinstance(value, int) and not -INT64 <= value < INT64:
        return False
    return isinstance(value, kinds)


def _read_config(path: Path) -> dict[str, Any]:
    """A trial's config.yaml, validated like every diffctl config: a damaged one is refused (naming the file)
    instead of giving wrong columns."""
    data = read_yaml_file(path)  # its errors name the file already
    try:
        return config_from_dict(data).to_dict()
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None


def _read_records(trial_dir: Path) -> list[dict[str, Any]]:
    """The trial's metrics.jsonl (none yet when it is missing), each record checked as :func:`_check_record` says."""
    records = read_metrics(trial_dir)
    for i, record in enumerate(records):
        _check_record(record, f"{trial_dir / METRICS_FILE}: record {i + 1}")
    return records


def _check_record(record: Any, where: str) -> None:
    """An epoch record as diffctl.train yields it: an integer epoch >= 1, a text status, numbers (or null)."""
    if not isinstance(record, dict):
        raise InputError(f"{where}: expected a JSON object")
    epoch = record.get("epoch")
    if not _has_type(epoch, (int,)) or epoch < 1:
        raise InputError(f"{where}: epoch: expected an integer >= 1 (got {shown(epoch)})")
    if not isinstance(record.get("status"), str):
        raise InputError(f"{where}: status: expected text (got {shown(record.get('status'))})")
    for key, value in record.items():
        kinds: tuple[type, ...] = (str, type(None)) if key in TEXT_FIELDS else (int, float, type(None))
        if not _has_type(value, kinds):
            raise InputError(f"{where}: {key}: expected {'text' if key in TEXT_FIELDS else 'a number'} "
                             f"(got {shown(value)})")


def trial_dirs(study_dir: Path) -> list[tuple[str, Path]]:
    """(phase, directory) of every trial: each directory under a phase's folder holding a trial.json; the built-in
    phases in their order, then any phase of one's own (``study.phases.registry.register_phase``) by name."""
    found = []
    own = sorted({p.parents[2].name for p in study_dir.glob(f"*/*/*/{TRIAL_FILE}")} - set(PHASES))
    for phase in (*PHASES, *own):
        root = study_dir / phase
        if root.is_dir():
            found += [(phase, p.parent) for p in sorted(root.rglob(TRIAL_FILE))]
    return found


def _check_named_metrics(spec: StudySpec, records: list[dict[str, Any]], spec_path: Path) -> None:
    """Every metric the spec names is a numeric field of the finished epochs (a spec.yaml edited by hand may name
    one that no record has; the analysis would fail half-way). Nothing to check before any epoch finished."""
    fields = {key for record in records if record.get("status") == "ok" for key in record}
    for where, metric in spec.named_metrics():
        if fields and (metric not in fields or metric in TEXT_FIELDS):
            raise InputError(f"{spec_path}: {where}: {metric!r} is not a numeric field of this study's records")


def _trial_row(
    study_dir: Path, phase: str, trial_dir: Path, records: list[dict], spec: StudySpec
) -> dict[str, Any]:
    info = read_info(trial_dir)
    data = info.to_dict()
    config_path = trial_dir / "config.yaml"
    config = _read_config(config_path) if config_path.exists() else {}
    config.pop("provenance", None)
    row: dict[str, Any] = {
        "arm": info.arm,
        "phase": info.phase,
        "trial_id": info.trial_id,
        "seed": info.seed,
        "status": info.status,
        "reason": info.reason,
        "epochs_done": info.epochs_done,
        "wall_time_s": float(info.wall_time_s),
        "source_trial": info.source_trial,
        "params": json.dumps(info.params, sort_keys=True),
        # The whole trial.json and config, as JSON text: a published study (its Parquet tables without the trial
        # directories) still says everything the trial files said (the analysis and the export read them).
        "info_json": json.dumps(data, sort_keys=True),
        "config_json": json.dumps(config, sort_keys=True),
        "trial_dir": str(trial_dir.relative_to(study_dir)),
        # Ray's trial ids are random: config.yaml, written once when a trial starts, dates its start instead.
        "started_at": (config_path if config_path.exists() else trial_dir / TRIAL_FILE).stat().st_mtime,
    }
    row.update(_node_columns(info.nodes))
    code = info.code or {}
    row.update(code_commit=code.get("commit"), code_dirty=code.get("dirty"), code_diff_sha256=code.get("diff_sha256"))
    if info.exploits is not None:  # a PBT member: how often it took another member's state
        row["exploits"] = len(info.exploits)
    # The other keys of trial.json (source_feasible, sampling, ...; and any a later version adds) as they are.
    row.update({k: v for k, v in data.items() if k not in row and k != "params" and not isinstance(v, (dict, list))})
    # A record's status can be more recent than trial.json's if the trial died between the two writes.
    if records and records[-1].get("status") == "diverged" and row["status"] in ("running", "ok"):
        row["status"], row["reason"] = "diverged", records[-1].get("reason")
    row.update({k: v for k, v in flatten(config).items() if k != "seed"})
    finished = [r for r in records if r.get("status") == "ok"]
    row["final_epoch"] = finished[-1]["epoch"] if finished else None
    if finished:
        row.update({f"final_{k}": v for k, v in finished[-1].items() if is_number(v) and k != "epoch"})
    for objective in spec.tracked_objectives():
        values = [r[objective.metric] for r in finished if is_number(r.get(objective.metric))]
        row[f"best_{objective.metric}"] = (min if objective.mode == "min" else max)(values) if values else None
    return row


def _node_columns(sessions: list[Session]) -> dict[str, Any]:
    """trial.json's ``nodes`` (one {node_id, hostname, started_at} per session) as columns: ``nodes`` and ``hosts``
    (comma-joined, in session order), ``first_node``, ``node_changes`` (sessions that ran on another node
    than the session before: a trial restarted elsewhere after its node was lost) and ``first_session_at`` (when
    its first session started). None where not recorded."""
    if not sessions:
        return {"nodes": None, "hosts": None, "first_node": None, "node_changes": None, "first_session_at": None}
    ids = [s.node_id for s in sessions]
    return {"nodes": ",".join(ids), "hosts": ",".join(s.hostname for s in sessions), "first_node": ids[0],
            "node_changes": sum(a != b for a, b in zip(ids, ids[1:])), "first_session_at": sessions[0].started_at}


def _flag(trials: pd.DataFrame, spec: StudySpec) -> pd.DataFrame:
    # The search replicate of every run (an ablation or retune run stands for one configuration: replicate 0).
    replicate = trials["replicate"] if "replicate" in trials else pd.Series(0, index=trials.index)
    trials["replicate"] = replicate.fillna(0).astype(int)
    trials["diverged"] = trials["status"] == "diverged"
    trials["errored"] = trials["status"] == "error"
    # Continued from its saved state after its worker died or the driver was killed (usable if it then finished).
    restarts = trials["restarts"] if "restarts" in trials else pd.Series(0, index=trials.index)
    trials["restarts"] = restarts.fillna(0).astype(int)
    trials["restarted"] = trials["restarts"] > 0
    trials["usable"] = trials["status"].isin(USABLE_STATUSES) & trials["final_epoch"].notna()
    # Judged on the test split: a confirmed run (confirm, distill, ablate) whose records have the test fields
    # (eval.test_split). A search, audit or retune trial stands for a search decision: judged on val, as the study
    # judged it.
    tested = trials.get("eval.test_split", pd.Series(False, index=trials.index)).eq(True)
    tested &= trials["phase"].isin(TEST_JUDGED_PHASES)
    trials["feasible_split"] = tested.map({True: "test", False: "val"})
    feasible, feasible_val = trials["usable"].copy(), trials["usable"].copy()
    missing = pd.Series(math.nan, index=trials.index)
    for constraint in spec.parsed_constraints():
        as_written = trials.get(f"final_{constraint.metric}", missing).map(constraint.holds).astype(bool)
        feasible_val &= as_written
        counterpart = counterpart_on_test(constraint.metric)  # None: not on the val split (e.g. recon_coverage_A)
        if counterpart is None:
            feasible &= as_written
        else:
            on_test = trials.get(f"final_{counterpart}", missing).map(constraint.holds).astype(bool)
            feasible &= on_test.where(tested, as_written)
    trials["feasible"] = feasible
    # What the study's own decisions saw (the val split): the analysis's picks (analysis.runs) rank on it.
    trials["feasible_val"] = feasible_val
    return trials


def _uniform_types(frame: pd.DataFrame) -> pd.DataFrame:
    """Give every object column one Python type (as text when mixed) so that Parquet can store it."""
    for column in frame.columns[frame.dtypes == object]:
        kinds = {type(v) for v in frame[column].dropna()}
        if len(kinds) > 1 and not kinds <= {int, float}:
            frame[column] = frame[column].map(lambda v: None if v is None or v != v else str(v))
    return frame


def build_tables(study_dir: str | Path) -> StudyTables:
    """Read every trial of ``study_dir`` into :class:`StudyTables` (nothing is written)."""
    root = Path(study_dir).absolute()
    if not root.is_dir():
        raise InputError(f"{study_dir}: " + ("not a directory" if root.exists() else "no such study directory"))
    spec = saved_spec(root)
    if is_published(root):
        return _published_tables(root, spec)
    rows, epoch_rows = [], []
    for phase, trial_dir in trial_dirs(root):
        records = _read_records(trial_dir)
        row = _trial_row(root, phase, trial_dir, records, spec)
        rows.append(row)
        ids = {k: row[k] for k in (*ID_COLUMNS, "seed")}
        epoch_rows += [{**ids, **record} for record in records]
    if not rows:
        raise InputError(f"{study_dir}: no trials yet (no trial.json under {', '.join(f'{p}/' for p in PHASES)})")
    _check_named_metrics(spec, epoch_rows, root / SPEC_FILE)
    trials = _flag(_uniform_types(pd.DataFrame(rows)), spec)
    epochs = pd.DataFrame(epoch_rows) if epoch_rows else pd.DataFrame(columns=[*ID_COLUMNS, "seed", "epoch"])
    epochs = _uniform_types(epochs)
    return StudyTables(root, spec, trials, epochs)


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except FileNotFoundError:
        raise InputError(f"{path}: missing (a published study keeps {TRIALS_FILE} and {EPOCHS_FILE})") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable ({type(exc).__name__})") from None


def _published_tables(root: Path, spec: StudySpec) -> StudyTables:
    """The tables of a published study, read back from its Parquet files."""
    trials, epochs = _read_parquet(root / TRIALS_FILE), _read_parquet(root / EPOCHS_FILE)
    for path, frame, needed in ((root / TRIALS_FILE, trials, ("info_json", "config_json", "usable", "feasible")),
                                (root / EPOCHS_FILE, epochs, ("epoch",))):
        missing = [c for c in (*ID_COLUMNS, *needed) if c not in frame]
        if missing:
            raise InputError(f"{path}: column {missing[0]} missing (written by an earlier diffctl, or not a study's)")
    status = epochs[epochs.get("status", pd.Series("ok", index=epochs.index)) == "ok"]
    _check_named_metrics(spec, [dict(zip(status.columns, row)) for row in status.head(1).itertuples(index=False)],
                         root / SPEC_FILE)
    return StudyTables(root, spec, trials, epochs, published=True)


def trial_info(tables: StudyTables, row: pd.Series) -> TrialInfo:
    """The ``trial.json`` of a row of the trials table (from its ``info_json``)."""
    return parse_info(json.loads(row["info_json"]), tables.study_dir / row["trial_dir"] / TRIAL_FILE)


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame`` as Parquet atomically (a reader never sees a half-written table)."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    atomic_write_bytes(path, buffer.getvalue())


def save_tables(tables: StudyTables) -> None:
    """Save the tables as trials.parquet / epochs.parquet in the study directory (a published study's are what
    they were read from: left as they are)."""
    if tables.published:
        return
    write_parquet(tables.trials, tables.study_dir / TRIALS_FILE)
    write_parquet(tables.epochs, tables.study_dir / EPOCHS_FILE)


def load(study_dir: str | Path) -> StudyTables:
    """Read a study directory into tables and save them as trials.parquet / epochs.parquet beside it."""
    tables = build_tables(study_dir)
    save_tables(tables)
    return tables
