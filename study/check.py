"""``diffctl study check SPEC``: everything ``diffctl study run`` checks before it starts, then the plan; runs
nothing, writes nothing and starts no Ray (this module imports neither Ray nor Optuna).

The checks are the run's own (:func:`checked_run`, which ``study.runner.run_study`` calls too): the spec loaded and
checked against diffctl (``study.protocol.load_spec``: every config a trial can receive, every ablation option's
values, every metric named looked up in a real one-step epoch record of each arm kind), the study name, and a study
directory that can be created and does not exist yet. The plan is read off the spec (``study.protocol.plan``): per phase
and arm label the most trials it can run and their trial-epochs, then the same per arm.

Example::

    diffctl study check tiny              # study/specs/tiny.yaml
    diffctl study check my-spec.yaml --name trial-run --storage /shared/results
"""

from __future__ import annotations

import os
from pathlib import Path

from diffctl.errors import InputError

from .protocol import StudySpec, load_spec
from .phases.base import Place
from .phases.registry import PhasePlaces, check_phases, phases
from .probe import check_metrics


def checked_spec(spec_path: str | Path, *, name: str | None = None, max_concurrent: int | None = None) -> StudySpec:
    """A spec file loaded with every check a study makes before it runs: its schema and sections
    (``study.protocol.load_spec``), the sections of the phases it names (``study.phases.registry.check_phases``) and
    every metric it names against a real epoch record of each arm kind (``study.probe``)."""
    spec = load_spec(spec_path, name=name, max_concurrent=max_concurrent)
    check_phases(spec)
    check_metrics(spec)
    return spec


def checked_run(spec_path: str, *, name: str | None, storage: str, max_concurrent: int | None
                ) -> tuple[StudySpec, Path]:
    """The spec of ``study run`` loaded and checked, and the study directory it would create (absolute; neither
    it nor the storage is created here). Raises :class:`InputError` with one line naming the key or argument."""
    spec = checked_spec(spec_path, name=name, max_concurrent=max_concurrent)
    study_dir = Path(storage).absolute() / spec.name
    existing = next(p for p in study_dir.parents if p.exists())  # the storage, or the ancestor it is made in
    if not existing.is_dir():
        raise InputError(f"--storage {storage}: {existing} is not a directory")
    if study_dir.exists():
        raise InputError(f"--name {spec.name}: {study_dir} exists (resume it with: diffctl study resume {study_dir})")
    return spec, study_dir


def plan_rows(spec: StudySpec) -> list[tuple[Place, str, int, int]]:
    """(place, how it is searched, most trials, most trial-epochs) of every place, in the order they run."""
    places = PhasePlaces(phases(), spec)
    return [(place, "" if phase.plans else spec.arms[place.label].search, bound, bound * spec.epochs)
            for phase, place in places for bound in [places.bound(place)]]


def _table(header: tuple[str, ...], rows: list[tuple]) -> list[str]:
    cells = [tuple(str(c) for c in row) for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    numeric = [all(str(row[i]).isdigit() for row in rows) and bool(rows) for i in range(len(header))]
    return ["  ".join(c.rjust(w) if numeric[i] else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()
            for row in cells]


def reference_words(spec: StudySpec) -> str:
    """The reference arm and why it is the one: named by ``reference``, or the default rule."""
    reference = spec.reference_arm()
    default = spec.model_copy(update={"reference": None}).reference_arm()
    why = "the default: the first non-PBT arm training arm.kind fixed" if reference == default else "named by reference"
    return f"{reference} ({why})"


def plan_lines(spec: StudySpec, spec_path: str, study_dir: Path) -> list[str]:
    """What ``diffctl study check`` prints: the spec's decisions, the places and the arms' totals."""
    rows = plan_rows(spec)
    lines = [f"{spec_path}: the spec is valid; nothing was run or written (study run would write {study_dir})", "",
             f"study {spec.name}: {len(spec.arms)} arms x {spec.search_replicates} search replicate(s), {spec.epochs} "
             f"epochs per trial, at most {spec.max_concurrent} trials at once, {spec.cpus_per_trial} CPU(s) each",
             f"selection: {spec.selection.metric} ({spec.selection.mode}), feasible first; constraints: "
             f"{'; '.join(spec.constraints) or 'none'}",
             f"objectives: {', '.join(f'{o.metric} ({o.mode})' for o in spec.objectives)}",
             f"reference arm every other arm is compared with: {reference_words(spec)}",
             f"confirmation seeds: {', '.join(map(str, spec.confirm.seeds))}; top {spec.confirm.top_k} per arm and "
             "replicate", ""]
    cpus = os.cpu_count() or 1
    if spec.cpus_per_trial > cpus:
        lines[-1:-1] = [f"note: cpus_per_trial {spec.cpus_per_trial} is more than this machine has ({cpus}); a run "
                        "here would refuse it (run it on a cluster with --address)"]
    lines += ["Planned trials (at most: early stopping, arms with nothing to confirm and ablation options that "
              "change nothing run fewer):", ""]
    lines += _table(("phase", "arm", "search by", "trials", "trial-epochs"),
                    [(place.phase, place.label, how, bound, epochs) for place, how, bound, epochs in rows])
    per_arm: dict[str, dict[str, int]] = {arm: {} for arm in spec.arms}
    for place, _, bound, _ in rows:
        counts = per_arm.setdefault(place.source, {})
        counts[place.phase] = counts.get(place.phase, 0) + bound
    phases = list(dict.fromkeys(place.phase for place, *_ in rows))
    totals = [(arm, *(counts.get(p, 0) for p in phases), sum(counts.values()), sum(counts.values()) * spec.epochs)
              for arm, counts in per_arm.items()]
    totals.append(("total", *(sum(r[1 + i] for r in totals) for i in range(len(phases))),
                   sum(r[-2] for r in totals), sum(r[-1] for r in totals)))
    lines += ["", "Per arm (its own phases and every label made from it):", ""]
    lines += _table(("arm", *phases, "trials", "trial-epochs"), totals)
    return lines


def check_command(spec_path: str, *, name: str | None, storage: str, max_concurrent: int | None) -> None:
    """``diffctl study check``: the run's checks, then the plan on stdout."""
    spec, study_dir = checked_run(spec_path, name=name, storage=storage, max_concurrent=max_concurrent)
    print("\n".join(plan_lines(spec, spec_path, study_dir)))
