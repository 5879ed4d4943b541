"""The study directory's ``state.json`` (which phase of which arm is running or done, for resume and status)
and the summary that ``diffctl study status`` prints from the trial files, without Ray.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from diffctl.errors import InputError
from diffctl.files import atomic_write_text

from .disk import disk_warning
from .objectives import is_feasible, selection_value
from .spec import StudySpec, read_spec_file
from .ablate import NOT_APPLICABLE, SAME, option_text, read_plan
from .distill import phase_places, place_bound
from .trialdir import CONFIRM, DIVERGED, ERROR, OK, RUNNING, SEARCH, STOPPED, TrialSummary, read_trials

NO_RUNS = {SAME: "same", NOT_APPLICABLE: "n/a"}  # the state shown for an ablation option that runs nothing

STATE_FILE, SPEC_FILE = "state.json", "spec.yaml"
PHASE_RUNNING, PHASE_DONE = "running", "done"


def new_state(name: str, address: str | None) -> dict[str, Any]:
    return {
        "name": name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "phases": {SEARCH: {}, CONFIRM: {}},
        "ray_address": address,
    }


def read_state(study_dir: Path) -> dict[str, Any]:
    path = study_dir / STATE_FILE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{study_dir}: not a study directory (no {STATE_FILE})") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable ({exc})") from None
    phases = state.get("phases") if isinstance(state, dict) else None
    if not (isinstance(phases, dict) and all(isinstance(phases.get(p), dict) for p in (SEARCH, CONFIRM))
            and isinstance(state.get("name"), str) and isinstance(state.get("created"), str)):
        raise InputError(f"{path}: not a study state (an object with name, created, phases.search, phases.confirm)")
    return state


def write_state(study_dir: Path, state: dict[str, Any]) -> None:
    atomic_write_text(study_dir / STATE_FILE, json.dumps(state, indent=1) + "\n")


def set_phase(study_dir: Path, phase: str, arm: str, value: str) -> None:
    state = read_state(study_dir)
    state["phases"].setdefault(phase, {})[arm] = value
    write_state(study_dir, state)


def saved_spec(study_dir: Path) -> StudySpec:
    """The resolved spec a study was started with (schema-checked only: it passed every check at start)."""
    return read_spec_file(study_dir / SPEC_FILE)


def best_trial(spec: StudySpec, trials: list[TrialSummary]) -> TrialSummary | None:
    """The best feasible finished trial by the spec's selection rule, or None."""
    feasible = [t for t in trials if t.status == OK and is_feasible(spec, t.last)]
    return max(feasible, key=lambda t: selection_value(spec, t.last), default=None)


def status_lines(study_dir: Path) -> list[str]:
    """A table of trials done / running / failed per arm and phase, with the best selection value so far."""
    state = read_state(study_dir)
    spec = saved_spec(study_dir)
    assert spec.selection is not None
    lines = [f"study {state['name']} at {study_dir} (created {state['created']})"]
    places = phase_places(spec)
    width = max(20, *(len(arm) for _, arm in places))  # the longest label (an ablation option's) in one column
    header = f"{'phase':8} {'arm':{width}} {'state':8} {'ok':>4} {'stop':>4} {'div':>4} {'err':>4} {'run':>4} {'total':>5}"
    lines.append(f"{header}  best {spec.selection.metric} ({spec.selection.mode}, feasible)")
    abandoned = []
    plan = read_plan(study_dir)
    idle = {o.label: o for o in plan.options if o.status in NO_RUNS} if plan is not None else {}
    for phase, arm in places:
        trials = read_trials(study_dir / phase / arm)
        if replaced := sum(t.abandoned for t in trials):
            abandoned.append(f"{phase} {arm}: {replaced}")
        trials = [t for t in trials if not t.abandoned]
        phase_state = state["phases"].get(phase, {}).get(arm, "pending")
        if arm in idle:
            phase_state = NO_RUNS[idle[arm].status]
        bound = 0 if arm in idle else place_bound(spec, phase, arm)
        # a phase still running may not have started every run it plans: at most its bound until it is done
        total = len(trials) if phase != SEARCH and phase_state == PHASE_DONE else max(bound, len(trials))
        count = {s: sum(t.status == s for t in trials) for s in (OK, STOPPED, DIVERGED, ERROR, RUNNING)}
        best = best_trial(spec, trials)
        shown = f"{best.last[spec.selection.metric]:.4f} ({best.trial_id})" if best else "-"
        lines.append(
            f"{phase:8} {arm:{width}} {phase_state:8} {count[OK]:>4} {count[STOPPED]:>4} {count[DIVERGED]:>4} "
            f"{count[ERROR]:>4} {count[RUNNING]:>4} {total:>5}  {shown}"
        )
    if abandoned:
        lines.append(f"not counted, started by a killed driver and replaced on resume: {', '.join(abandoned)}")
    if plan is not None:
        lines.append(f"ablation around {plan.arm}'s confirmed configuration "
                     + (f"(search trial {plan.centre}, seeds {', '.join(str(r.seed) for r in plan.runs)})"
                        if plan.centre else "(none: it confirmed nothing)"))
        lines += [f"  {o.axis}: {o.option}: {option_text(o)}" for o in idle.values()]
    if (warning := disk_warning(study_dir, spec)) is not None:
        lines.append(warning)
    return lines


def storage_lines(storage: Path) -> list[str] | None:
    """For a folder of studies (such as ``results``): one line per study directory in it, finished or not.
    None when ``storage`` is itself a study directory or holds none."""
    try:
        if (storage / STATE_FILE).exists():
            return None
        studies = sorted(p for p in storage.iterdir() if (p / STATE_FILE).is_file())
    except OSError:
        return None
    if not studies:
        return None
    count = f"{len(studies)} study" if len(studies) == 1 else f"{len(studies)} studies"
    lines = [f"{count} in {storage} (diffctl study status {storage}/NAME shows one)"]
    width = max(len(p.name) for p in studies)
    for study_dir in studies:
        try:
            state = read_state(study_dir)
        except InputError as exc:
            lines.append(f"  {study_dir.name:{width}}  unreadable: {exc}")
            continue
        shown = "finished" if state.get("finished") else f"not finished (resume: diffctl study resume {study_dir})"
        lines.append(f"  {study_dir.name:{width}}  created {state['created']}  {shown}")
    return lines
