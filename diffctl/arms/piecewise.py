"""Piecewise-constant weights, rho and learning rate over epoch ranges: a schedule written by hand, or replayed
from a run's records (open loop: the same per-epoch values, no feedback).

Example (``arm:`` of a config)::

    arm:
      kind: piecewise
      segments:
        - {until_epoch: 3, rho: 0.1, w_recon: 1.0, w_kl: 0.1, w_rank: 0.5, w_ent: 0.1, lr: 1.0e-3}
        - {until_epoch: 10, rho: 0.0, w_kl: [0.05, 0.2], w_rank: 2.0, lr: 5.0e-4}
        - {rho: 0.0, w_rank: 4.0, lr: 2.0e-4}

A segment holds from the epoch after the previous one's ``until_epoch`` (1 for the first) to its own
``until_epoch`` inclusive, counted from 1 as the records' ``epoch``; the last segment sets no ``until_epoch`` and
runs to the end of the run, so every epoch has a segment whatever ``optim.epochs`` is. rho and the weights have the
fixed arm's bounds and defaults (a key a segment leaves out takes the fixed arm's default, not the previous
segment's value); a weight is a number or a pair ``[A, B]`` (one per VAE). ``lr``, set in every segment or in none,
is the model's learning rate from the segment's first epoch on (optimiser group 0, the model's: this arm has no
parameters of its own); in none, ``optim.lr`` holds. Ranges rather than one entry per epoch: a schedule found by
population based training is constant over its perturbation intervals, and a replay merges equal epochs, while a
40-epoch replay of a controller costs one ``until_epoch`` key per epoch more than a per-epoch list would.

Distilling a run (:func:`schedule_from_records`, :func:`constant_from_records`): the values are the records'
epoch means ``rho_mean`` and ``w_*_mean`` (``w_*_A_mean`` / ``w_*_B_mean`` as a pair where the source weighted the
VAEs apart). A per-sample or per-latent rho is held as its mean over elements and steps, ``rho_mean``. The recorded
``lr`` is the rate at the epoch's end, so a replay of a run whose rate moved within epochs (hypergradient) holds one
rate per epoch. A replay reproduces the source's per-epoch means to float32 rounding (the arm holds float32
tensors; the records are float64 means).
"""

from __future__ import annotations

import bisect
import math
from typing import Literal, Mapping, Sequence

from pydantic import Field, create_model, field_validator
from pydantic_core import PydanticCustomError

from ..errors import InputError
from ..schema import Section
from .base import WEIGHT_NAMES, Arm, Control, StepInputs
from .fixed import FixedOptions, constant_control, control_fields, number_or_pair

CONTROL_KEYS = ("rho", *WEIGHT_NAMES)
MODEL_GROUP = 0  # the trainer puts the model's parameters in optimiser group 0, an arm's own after it

Segment = create_model(
    "Segment",
    __base__=Section,
    __validators__={"per_vae": field_validator(*WEIGHT_NAMES, mode="wrap")(number_or_pair)},
    until_epoch=(
        int | None,
        Field(None, ge=1, le=10_000, description="last epoch of the segment, from 1 (unset: the last segment)"),
    ),
    **control_fields(),
    lr=(
        float | None,
        Field(None, gt=0.0, le=10.0, description="model learning rate in the segment (as optim.lr; null: optim.lr)"),
    ),
)


def _item_error(index: int, key: str, message: str, value) -> PydanticCustomError:
    """An error at ``segments[index].key`` (the config loader reads ``loc`` and ``input`` from the context)."""
    context = {"message": message, "loc": (index, key), "input": value}
    return PydanticCustomError("piecewise_segments", "{message}", context)


class PiecewiseOptions(Section):
    kind: Literal["piecewise"] = "piecewise"
    segments: list[Segment] = Field(
        [{}],  # one segment of the fixed arm's defaults: the fixed arm
        min_length=1,
        max_length=10_000,
        description="epoch ranges in order (until_epoch, rho, w_recon, w_kl, w_rank, w_ent, lr), the last open-ended",
    )

    @field_validator("segments")
    @classmethod
    def _ordered(cls, segments: list) -> list:
        last = len(segments) - 1
        for i, segment in enumerate(segments):
            end = segment.until_epoch
            if i == last and end is not None:
                raise _item_error(i, "until_epoch", "the last segment runs to the end of the run: leave it unset", end)
            if i < last and end is None:
                raise _item_error(i, "until_epoch", "missing (every segment but the last needs one)", end)
            if 0 < i < last and end <= segments[i - 1].until_epoch:
                previous = segments[i - 1].until_epoch
                message = f"must be greater than segments[{i - 1}].until_epoch {previous}"
                raise _item_error(i, "until_epoch", message, end)
            if (segment.lr is None) != (segments[0].lr is None):
                does = "sets it" if segments[0].lr is not None else "does not"
                raise _item_error(i, "lr", f"set lr in every segment or in none (segments[0] {does})", segment.lr)
        return segments


class PiecewiseArm(Arm):
    """Constant rho, weights and learning rate within each epoch range of ``segments``."""

    kind = "piecewise"
    Options = PiecewiseOptions

    def __init__(self, options: PiecewiseOptions, latent_dim: int) -> None:
        super().__init__(options, latent_dim)
        self._controls = [constant_control(segment) for segment in options.segments]
        self._ends = [segment.until_epoch for segment in options.segments[:-1]]
        self._current = 0

    def segment_index(self, epoch: int) -> int:
        """The index of the segment that holds the 0-based ``epoch``."""
        return bisect.bisect_left(self._ends, epoch + 1)

    def start_epoch(self, epoch, history, optimizer) -> None:
        self._current = self.segment_index(epoch)
        lr = self.options.segments[self._current].lr
        if lr is not None:
            optimizer.param_groups[MODEL_GROUP]["lr"] = lr

    def control(self, inputs: StepInputs) -> Control:
        return self._controls[self._current]

    def moves_rho(self) -> bool:
        return len({segment.rho for segment in self.options.segments}) > 1

    def eval_rho(self) -> float:
        return float(self._controls[self._current].rho)


# --- distilling a run's records ---------------------------------------------------------------------------------
def _finished(records: Sequence[Mapping]) -> list[Mapping]:
    """The records of the finished epochs (status ok), checked to be epochs 1, 2, ... of one run."""
    done = [record for record in records if record.get("status") == "ok"]
    if not done:
        raise InputError("records: no finished epoch (status ok)")
    for i, record in enumerate(done):
        if record.get("epoch") != i + 1:
            got = record.get("epoch")
            raise InputError(f"records[{i}].epoch: {got!r} where {i + 1} was expected (one run's records, in order)")
    return done


def _reader(done: list[Mapping], key: str):
    """A function reading ``key``'s value from a record: a number, or [A, B] where every record has both."""
    if key not in (*CONTROL_KEYS, "lr"):
        raise InputError(f"keys: unknown key {key!r} (known: {', '.join((*CONTROL_KEYS, 'lr'))})")
    pair = key in WEIGHT_NAMES and all(f"{key}_A_mean" in r and f"{key}_B_mean" in r for r in done)
    fields = [f"{key}_A_mean", f"{key}_B_mean"] if pair else ["lr" if key == "lr" else f"{key}_mean"]
    for i, record in enumerate(done):
        missing = [field for field in fields if not isinstance(record.get(field), (int, float))]
        if missing:
            raise InputError(f"records[{i}].{missing[0]}: missing or not a number")
    return (lambda r: [float(r[f]) for f in fields]) if pair else (lambda r: float(r[fields[0]]))


def schedule_from_records(records: Sequence[Mapping], keys: Sequence[str] = CONTROL_KEYS) -> list[dict]:
    """The ``segments`` of a piecewise arm that replays a run's per-epoch means of ``keys`` (add ``"lr"`` for its
    learning rate): one segment per finished epoch, consecutive equal epochs merged, the last one open-ended.

    Example::

        schedule_from_records([{"epoch": 1, "status": "ok", "rho_mean": 0.1, ...}, ...])
        # [{"until_epoch": 1, "rho": 0.1, "w_recon": 1.0, ...}, {"rho": 0.2, ...}]
    """
    done = _finished(records)
    readers = {key: _reader(done, key) for key in keys}
    segments: list[dict] = []
    for record in done:
        values = {key: read(record) for key, read in readers.items()}
        if segments and all(segments[-1][key] == value for key, value in values.items()):
            segments[-1]["until_epoch"] = record["epoch"]
        else:
            segments.append({"until_epoch": record["epoch"], **values})
    del segments[-1]["until_epoch"]
    return segments


def constant_from_records(
    records: Sequence[Mapping], how: Literal["final", "mean"] = "final", keys: Sequence[str] = CONTROL_KEYS
) -> dict:
    """The options of a fixed arm (``kind`` included) holding a run's values of ``keys``: the last finished
    epoch's means (``final``) or the mean over its finished epochs, each epoch weighted equally (``mean``)."""
    if how not in ("final", "mean"):
        raise InputError(f"how: expected 'final' or 'mean', got {how!r}")
    if "lr" in keys:
        raise InputError("keys: lr is not an option of the fixed arm (a constant rate is optim.lr)")
    done = _finished(records)
    done = done[-1:] if how == "final" else done
    options: dict = {"kind": FixedOptions.model_fields["kind"].default}
    for key in keys:
        read = _reader(done, key)
        values = [read(record) for record in done]
        if isinstance(values[0], list):
            options[key] = [math.fsum(v[vae] for v in values) / len(values) for vae in (0, 1)]
        else:
            options[key] = math.fsum(values) / len(values)
    return options
