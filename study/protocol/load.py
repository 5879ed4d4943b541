"""Reading a study spec: a YAML file validated against the schema (``study.protocol.schema``), then checked against
diffctl (``study.protocol.checks``) before anything starts. Every error is one line that names the offending key.

Example::

    spec = load_spec("study/specs/quick.yaml")          # checked, resolved (name, selection filled in)
    spec = saved_spec("results/quick")                   # a study's own resolved spec.yaml, schema only
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pydantic
import yaml

from diffctl.config import first_error, read_yaml_file
from diffctl.config import format_validation_error as format_config_error
from diffctl.errors import InputError

from .checks import check_spec
from .errors import SpecError
from .schema import DISTRIBUTION_TYPES, LABEL_PATTERN, MAX_CONCURRENT, MUTATION_TYPES, StudySpec

SPEC_FILE = "spec.yaml"  # the resolved spec in a study directory


def _format_error(err: dict) -> str:
    loc = [str(p) for p in err["loc"]]
    # A tagged union puts the distribution type after the space key ('space', 'arm.rho', 'float', 'low'): drop it.
    # (likewise a PBT mutation: ('arms', 'pbt', 'pbt', 'mutations', 'arm.rho', 'float', 'low')).
    loc = [p for i, p in enumerate(loc)
           if not (p in DISTRIBUTION_TYPES and i >= 2 and loc[i - 2] in ("space", "mutations"))]
    key = ".".join(loc)
    known = ", ".join(MUTATION_TYPES if len(loc) >= 2 and loc[-2] == "mutations" else DISTRIBUTION_TYPES)
    if err["type"] == "missing":
        return f"{key}: missing"
    if err["type"] == "union_tag_invalid":
        return f"{key}.type: unknown distribution type {err['input'].get('type')!r} (known: {known})"
    if err["type"] == "union_tag_not_found":
        return f"{key}.type: missing (known: {known})"
    # Everything else reads as a config error does ("<key>: unknown key (did you mean ...?)", "<key>: <message>
    # (got <value>)").
    return format_config_error(dict(err, loc=tuple(loc)), model=StudySpec)


def spec_from_dict(data: Any) -> StudySpec:
    """Validate the schema of a spec (no check against diffctl yet)."""
    if not isinstance(data, dict):
        raise SpecError(f"spec: expected a mapping, got {type(data).__name__}")
    try:
        return StudySpec.model_validate(data)
    except pydantic.ValidationError as exc:
        raise SpecError(_format_error(first_error(exc.errors()))) from None


def read_spec_file(path: Path) -> StudySpec:
    """A spec file checked against the schema only (a study's saved ``spec.yaml``); errors name the file."""
    data = read_yaml_file(path)  # its errors name the file already
    try:
        return spec_from_dict(data)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None


def saved_spec(study_dir: str | Path) -> StudySpec:
    """The resolved spec a study was started with (``<study_dir>/spec.yaml``, schema-checked only: it passed every
    check at start); a missing or malformed one raises :class:`InputError` naming it."""
    path = Path(study_dir) / SPEC_FILE
    if not path.is_file():
        raise InputError(f"{study_dir}: not a study directory (no {SPEC_FILE})")
    spec = read_spec_file(path)
    return spec if spec.name else spec.model_copy(update={"name": Path(study_dir).name})


def load_spec(
    path: str | Path, *, name: str | None = None, max_concurrent: int | None = None
) -> StudySpec:
    """Read, validate and check a spec file; returns it resolved (name, concurrency and reference filled in).

    ``name`` and ``max_concurrent`` override the spec's (the ``--name`` and ``--max-concurrent`` options).
    The metrics it names are looked up in real epoch records before a study runs (``study.check.checked_spec``).
    """
    spec = spec_from_dict(read_yaml_file(path))
    if name is not None and not re.match(LABEL_PATTERN, name):
        raise SpecError(f"--name {name!r}: use letters, digits, '_', '.', '-' (at most 64 characters)")
    if max_concurrent is not None and not 1 <= max_concurrent <= MAX_CONCURRENT:
        raise SpecError(f"--max-concurrent {max_concurrent}: must be 1..{MAX_CONCURRENT}")
    resolved_name = name or spec.name or Path(path).stem
    if not re.match(LABEL_PATTERN, resolved_name):
        raise SpecError(f"name: {resolved_name!r} is not a valid study name (set name: in the spec or --name)")
    spec = spec.model_copy(update={"name": resolved_name, "max_concurrent": max_concurrent or spec.max_concurrent})
    check_spec(spec)
    return spec.model_copy(update={"reference": spec.reference_arm()})  # resolved: the arm the study compares with


def dump_spec(spec: StudySpec) -> str:
    return yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)


def check_resources(spec: StudySpec, cpus: float, where: str) -> None:
    """A trial asking for more CPUs than one node has would wait forever: refuse it before anything starts."""
    if spec.cpus_per_trial > cpus:
        raise SpecError(f"cpus_per_trial: {spec.cpus_per_trial} is more than {where} has ({cpus:g} CPUs)")
