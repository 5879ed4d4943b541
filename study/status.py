"""``diffctl study status``: per arm and phase, trials done / running / failed and the best selection value so
far, read from the trial files without Ray; whether a driver runs the study now (its lock, ``study.driver``); the
slot utilisation so far (``study.utilisation``); on a folder of studies, one line per study.
"""

from __future__ import annotations

import time
from pathlib import Path

from diffctl.errors import InputError

from .disk import disk_warning
from .driver import driver_pid
from .phases.ablate import NOT_APPLICABLE, SAME, option_text, read_plan
from .protocol import saved_spec
from .phases.registry import PhasePlaces, phases
from .protocol.ranking import best_trial
from .state import PHASE_DONE, PHASE_RUNNING, STATE_FILE, is_published, read_state
from .trialdir import (
    CONFIG_FILE,
    DIVERGED,
    ERROR,
    OK,
    RUNNING,
    STOPPED,
    TRIAL_FILE,
    TrialSummary,
    in_training,
    read_metrics,
    read_trials,
)
from .utilisation import TrialTime, epoch_seconds, setup_seconds, utilisation, utilisation_text

NO_RUNS = {SAME: "same", NOT_APPLICABLE: "n/a"}  # the state shown for an ablation option that runs nothing


def status_lines(study_dir: Path) -> list[str]:
    """A table of trials done / running / failed per arm and phase, with the best selection value so far."""
    state = read_state(study_dir)
    spec = saved_spec(study_dir)
    lines = [f"study {state['name']} at {study_dir} (created {state['created']})"]
    places = PhasePlaces(phases(), spec)
    width = max(20, *(len(place.label) for place in places.places()))  # the longest label (an ablation option's) in one column
    header = f"{'phase':8} {'arm':{width}} {'state':8} {'ok':>4} {'stop':>4} {'div':>4} {'err':>4} {'run':>4} {'total':>5}"
    lines.append(f"{header}  best {spec.selection.metric} ({spec.selection.mode}, feasible)")
    abandoned, paused = [], 0
    by_place = {place: read_trials(study_dir / place.phase / place.label) for place in places.places()}
    # "running" in trial.json, but only a trial a process trains now runs (not after an interrupt or a kill)
    training = {t.dir for trials in by_place.values() for t in trials if t.status == RUNNING and in_training(t.dir)}
    driver = driver_pid(study_dir)  # None: no driver holds the study's lock (none started, or it is gone)
    # else a driver is gone: its running phases are paused (a trial still training is one a killed driver left)
    live = not state.get("finished") and (driver is not None or bool(training))
    plan = read_plan(study_dir)
    # options that run nothing: the centre's configuration, another option's (same as <label>), or not applicable
    idle = {o.label: o for o in plan.options if o.status in NO_RUNS or o.same_as} if plan is not None else {}
    for place, trials in by_place.items():
        phase, arm = place.key
        if replaced := sum(t.abandoned for t in trials):
            abandoned.append(f"{phase} {arm}: {replaced}")
        trials = [t for t in trials if not t.abandoned]
        phase_state = state["phases"].get(phase, {}).get(arm, "pending")
        if arm in idle:
            phase_state = NO_RUNS.get(idle[arm].status, NO_RUNS[SAME])
        bound = 0 if arm in idle else places.bound(place)
        # a phase still running may not have started every run it plans: at most its bound until it is done
        total = len(trials) if places.phase(phase).plans and phase_state == PHASE_DONE else max(bound, len(trials))
        count = {s: sum(t.status == s for t in trials) for s in (OK, STOPPED, DIVERGED, ERROR)}
        count[RUNNING] = sum(t.dir in training for t in trials)
        paused += sum(t.status == RUNNING for t in trials) - count[RUNNING]
        if phase_state == PHASE_RUNNING and not live:
            phase_state = "paused"  # its driver is gone (interrupted or killed): `study resume` continues it
        best = best_trial(spec, trials)
        shown = f"{best.last[spec.selection.metric]:.4f} ({best.trial_id})" if best else "-"
        lines.append(
            f"{phase:8} {arm:{width}} {phase_state:8} {count[OK]:>4} {count[STOPPED]:>4} {count[DIVERGED]:>4} "
            f"{count[ERROR]:>4} {count[RUNNING]:>4} {total:>5}  {shown}"
        )
    if abandoned:
        lines.append(f"not counted, started by a killed driver and replaced on resume: {', '.join(abandoned)}")
    if driver is not None:
        lines.append(f"a driver{f' (pid {driver})' if driver else ''} is running this study"
                     + (f"; {paused} trial(s) between sessions (a population waiting at a perturbation epoch, or a "
                        "trial Ray restarts) continue under it" if paused else ""))
    elif paused:
        lines.append(f"{paused} trial(s) stopped between epochs, no process trains them: they continue from their "
                     f"saved state on `diffctl study resume {study_dir}`")
    if (used := _utilisation(spec.max_concurrent, [t for trials in by_place.values() for t in trials], training,
                             driver is not None)) is not None:
        lines.append(f"{'so far: ' if not state.get('finished') else ''}{utilisation_text(used)}")
    if plan is not None:
        lines.append(f"ablation around {plan.arm}'s confirmed configuration "
                     + (f"(search trial {plan.centre}, seeds {', '.join(str(r.seed) for r in plan.runs)})"
                        if plan.centre else "(none: it confirmed nothing)"))
        lines += [f"  {o.axis}: {o.option}: {option_text(o)}" for o in idle.values()]
    if (warning := disk_warning(study_dir, spec)) is not None:
        lines.append(warning)
    return lines


def _utilisation(slots: int, trials: list[TrialSummary], training: set[Path], live: bool):
    """The slot utilisation of the trials so far (``study.utilisation``): each trial from its start (when its
    ``config.yaml`` was written; ``analysis.load``'s ``started_at``) for its wall time; a trial in training runs
    until now, and while a driver is alive the span does too."""
    now = time.time()
    times = []
    for trial in trials:
        try:
            dated = trial.dir / CONFIG_FILE if (trial.dir / CONFIG_FILE).exists() else trial.dir / TRIAL_FILE
            start = dated.stat().st_mtime
        except OSError:  # removed while we looked
            continue
        sessions, wall = max(len(trial.info.nodes), 1), trial.info.wall_time_s
        setup = setup_seconds(wall, sessions, epoch_seconds(read_metrics(trial.dir)))
        first = trial.info.nodes[0].started_at if trial.info.nodes else None
        if trial.dir in training:  # its last session runs until now (its wall time counts finished epochs only)
            times.append(TrialTime(start, max(wall, now - start + setup), sessions, now - start + setup, setup, first))
        else:
            times.append(TrialTime(start, wall, sessions, setup_s=setup, first_start=first))
    return utilisation(times, slots, until=now if live else None)  # an idle live driver's time counts


def storage_lines(storage: Path) -> list[str] | None:
    """For a folder of studies (such as ``results``): one line per study directory in it, finished or not.
    None when ``storage`` is itself a study directory or holds none."""
    try:
        if (storage / STATE_FILE).exists() or is_published(storage):
            return None
        studies = sorted(p for p in storage.iterdir() if (p / STATE_FILE).is_file() or is_published(p))
    except OSError:
        return None
    if not studies:
        return None
    count = f"{len(studies)} study" if len(studies) == 1 else f"{len(studies)} studies"
    lines = [f"{count} in {storage} (diffctl study status {storage}/NAME shows one)"]
    width = max(len(p.name) for p in studies)
    for study_dir in studies:
        if is_published(study_dir):
            lines.append(f"  {study_dir.name:{width}}  published (its tables and report; no trial directories)")
            continue
        try:
            state = read_state(study_dir)
        except InputError as exc:
            lines.append(f"  {study_dir.name:{width}}  unreadable: {exc}")
            continue
        if state.get("finished"):
            shown = "finished"
        elif (pid := driver_pid(study_dir)) is not None:
            shown = f"running (a driver{f', pid {pid},' if pid else ''} runs it now)"
        else:
            shown = f"not finished (resume: diffctl study resume {study_dir})"
        lines.append(f"  {study_dir.name:{width}}  created {state['created']}  {shown}")
    return lines
