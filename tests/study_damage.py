"""Ways to damage input for the hostile-input tests of the study and analysis entry points: hypothesis strategies
that mutate a parsed spec or config (one value replaced, or an unknown key added), garble a file's bytes, and
:func:`damage`, which breaks one file of a study directory and says whether the result is still valid (then it is
no hostile case). The types a damaged file must violate are study/LAYOUT.md's (trial.json) and diffctl's (epoch
records), written out here independently of the code that checks them.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import yaml
from hypothesis import strategies as st

from diffctl.config import parse_yaml
from diffctl.errors import InputError
from study.protocol import spec_from_dict
from test_hostile_input import is_valid, scalars

# Values that a key of the wrong type or an absurd size gets.
values = st.one_of(scalars, st.sampled_from([0, -1, 10**9, 10**18, 2**63, [], {}, "", [1001, 1001]]))
# Replaced into a file: bytes that are never UTF-8 after ASCII text, and fragments that break YAML.
BAD_BYTES = [bytes([b]) for b in (*range(0x80, 0xC2), *range(0xF5, 0x100))]
YAML_JUNK = [b": [", b"{", b"\t", b"*alias", b"!!python/object/apply:os.system ['true']", b"'", b"%YAML 9\n", b"\x00"]


def paths_into(data, prefix=()) -> list[tuple]:
    """Every key path into nested mappings and lists, containers included."""
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else []
    return [p for key, value in items for p in [(*prefix, key), *paths_into(value, (*prefix, key))]]


@st.composite
def mutations(draw, base: dict):
    """``base`` with one value replaced, or an unknown key added to one mapping; with the names an error about
    it may use (the path's keys, or the new key)."""
    data = copy.deepcopy(base)
    if draw(st.booleans()):
        path = draw(st.sampled_from(paths_into(base)))
        _at(data, path[:-1])[path[-1]] = draw(values)
        return data, [p for p in path if isinstance(p, str)]
    section = draw(st.sampled_from([(), *(p for p in paths_into(base) if isinstance(_at(base, p), dict))]))
    key = draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=10))
    _at(data, section).setdefault(key, draw(values))
    return data, [key]


def _at(data, path: tuple):
    """The node at ``path`` in nested mappings and lists."""
    for part in path:
        data = data[part]
    return data


@st.composite
def garbled(draw, raw: bytes):
    """``raw`` with a slice replaced by junk: a byte that is not UTF-8, YAML syntax, or nothing."""
    i = draw(st.integers(0, len(raw)))
    j = draw(st.integers(i, min(len(raw), i + 40)))
    return raw[:i] + draw(st.sampled_from(BAD_BYTES + YAML_JUNK + [b""])) + raw[j:]


# The types of study/LAYOUT.md's trial.json keys and of diffctl's epoch records.
def _int(v) -> bool:
    return type(v) is int and -(2**63) <= v < 2**63


def _number(v) -> bool:
    return _int(v) or type(v) is float


def _text(v) -> bool:
    return type(v) is str


def _text_or_null(v) -> bool:
    return v is None or _text(v)


TRIAL_JSON = {
    "arm": _text, "phase": lambda v: v in ("search", "confirm"), "trial_id": _text, "status": _text,
    "reason": _text_or_null, "seed": _int, "epochs_done": _int, "restarts": _int, "wall_time_s": _number,
    "params": lambda v: type(v) is dict, "source_trial": _text_or_null,
    "source_feasible": lambda v: v is None or type(v) is bool,
    "nodes": lambda v: type(v) is list and all(type(s) is dict and _text(s.get("node_id")) and _text(s.get("hostname"))
                                               for s in v),
}
RECORD = {"epoch": lambda v: _int(v) and v >= 1, "status": _text, "reason": _text_or_null}


def record_field_ok(key, value) -> bool:
    return RECORD.get(key, lambda v: v is None or _number(v))(value)


def _spec_schema_ok(data) -> bool:
    try:
        spec_from_dict(data)
    except InputError:
        return False
    return True


def _yaml_ok(raw: bytes, valid) -> bool:
    try:
        return valid(parse_yaml(raw, "file"))
    except InputError:
        return False


# What a file of the study directory must be: its name, and the check of its content that the damage must fail.
STUDY_FILES = {"spec": ("spec.yaml", _spec_schema_ok), "config": ("config.yaml", is_valid),
               "trial": ("trial.json", None), "metrics": ("metrics.jsonl", None)}


NOT_A_MAPPING = st.one_of(st.booleans(), st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=3))


def damage(data, study: Path, target: str) -> tuple[Path, bool]:
    """Damage one file of ``study`` (a ``STUDY_FILES`` target) the way ``data`` draws it; returns the file and
    whether the damage is hostile (one that leaves a valid file, e.g. a value of the right type, is not)."""
    name, valid = STUDY_FILES[target]
    path = study / name if target == "spec" else data.draw(st.sampled_from(sorted(study.rglob(name))))
    raw = path.read_bytes()
    kinds = ["non-utf8", "directory", "not-a-mapping", "wrong-value"]
    kind = data.draw(st.sampled_from(kinds + (["garbled"] if valid else ["truncated"])), label="kind")
    if kind == "non-utf8":
        i = data.draw(st.integers(0, len(raw)))
        path.write_bytes(raw[:i] + data.draw(st.sampled_from(BAD_BYTES)) + raw[i:])
        return path, True
    if kind == "directory":
        path.unlink()
        path.mkdir()
        return path, True
    if kind == "garbled":
        path.write_bytes(data.draw(garbled(raw)))
        return path, not _yaml_ok(path.read_bytes(), valid)
    if target == "metrics":
        return path, _damage_record(data, path, kind)
    if target == "trial":
        return path, _damage_trial_info(data, path, kind)
    content = data.draw(NOT_A_MAPPING) if kind == "not-a-mapping" else data.draw(mutations(yaml.safe_load(raw)))[0]
    path.write_text(yaml.safe_dump(content))
    return path, not valid(content)


def _damage_record(data, path: Path, kind: str) -> bool:
    """Truncate metrics.jsonl inside a record, or make one record a non-object or give one field another value."""
    lines = path.read_text().splitlines()
    k = data.draw(st.integers(0, len(lines) - 1))
    if kind == "truncated":
        path.write_text("\n".join([*lines[:k], lines[k][: data.draw(st.integers(1, len(lines[k]) - 1))]]))
        return True
    record = json.loads(lines[k])
    if kind == "not-a-mapping":
        record, hostile = data.draw(st.one_of(st.none(), NOT_A_MAPPING)), True
    else:
        key = data.draw(st.sampled_from(sorted(record)))
        record[key] = data.draw(values)
        hostile = not record_field_ok(key, record[key])
    lines[k] = json.dumps(record)
    path.write_text("\n".join(lines) + "\n")
    return hostile


def _damage_trial_info(data, path: Path, kind: str) -> bool:
    """Truncate trial.json inside its object, or make it a non-object, or give one key another value."""
    text = path.read_text().rstrip()
    if kind == "truncated":
        path.write_text(text[: data.draw(st.integers(1, len(text) - 1))])
        return True
    if kind == "not-a-mapping":
        path.write_text(json.dumps(data.draw(st.one_of(st.none(), NOT_A_MAPPING))))
        return True
    info = json.loads(text)
    key = data.draw(st.sampled_from(sorted(info)))
    info[key] = data.draw(values)
    path.write_text(json.dumps(info))
    return not TRIAL_JSON.get(key, lambda v: True)(info[key])
