"""The names the spec alone decides: the built-in phases' names (the folders of the study directory, which the
analysis reads), the arm labels made from a spec arm (a distilled baseline, an ablation option), the ablation's
options and seeds, and the trials' names. The phases themselves — their places, what each waits for, the most
trials each can run, the runs each plans — are ``study.phases``.

Trial names (the directory ``<study>/<phase>/<label>/<name>/``) are the same in every run of the same spec:
``r<replicate>-<slot>`` for a search trial (``r0-0007``), ``r<replicate>-m<member>`` for a PBT member,
``g<point>-s<seed>`` for a front run (``g07-s0``), ``<source>-<seed>`` for a confirmation run (``r0-0007-1001``;
``r0-g07-s0-1001`` when replicate 0 picked a front point), the name of the run it is made from for a
distilled or audited run, ``t<slot>`` for a retune run and ``s<seed>`` for an ablation run.

Example::

    distilled_label("controller", "final")    # "controller.distilled_final"
    ablated_arms(spec)[0]                       # (label, centre arm, axis, option)
"""

from __future__ import annotations

from .schema import StudySpec

SEARCH, FRONT, CONFIRM, AUDIT, DISTILL, RETUNE, ABLATE = (
    "search", "front", "confirm", "audit", "distill", "retune", "ablate")
PHASES = (SEARCH, FRONT, CONFIRM, AUDIT, DISTILL, RETUNE, ABLATE)
# The phases whose runs a reader quotes: they also evaluate the held-out test split (``eval.test_split``). Search,
# audit and retune runs stand for search decisions and never do.
TEST_SPLIT_PHASES = (FRONT, CONFIRM, DISTILL, ABLATE)
STILL_KINDS = ("fixed",)  # arm kinds whose weights and rho never move: nothing to distill


def search_name(replicate: int, slot: int) -> str:
    return f"r{replicate}-{slot:04d}"


def member_name(replicate: int, member: int) -> str:
    return f"r{replicate}-m{member:02d}"


def confirm_name(source: str, seed: int, replicate: int | None = None) -> str:
    """``<source>-<seed>``; a source that is not a search trial of ``replicate`` (a front point) is prefixed with
    it, so that every replicate's runs have names of their own."""
    prefix = "" if replicate is None or source.startswith(f"r{replicate}-") else f"r{replicate}-"
    return f"{prefix}{source}-{seed}"


def retune_name(slot: int) -> str:
    return f"t{slot:04d}"


def ablate_name(seed: int) -> str:
    return f"s{seed}"


def replicate_of(name: str) -> int:
    """The search replicate a search, PBT member or confirmation run belongs to (its name's ``r<k>-`` prefix)."""
    return int(name[1:name.index("-")])


def slug(label: str) -> str:
    return label.replace(" ", "_")


def distilled_label(arm: str, variant: str) -> str:
    return f"{arm}.distilled_{variant}"


def ablate_label(arm: str, axis: str, option: str) -> str:
    """The arm label of one ablation option's runs (a directory name: no spaces)."""
    return f"{arm}.ablate.{slug(axis)}.{slug(option)}"


def ablated_arms(spec: StudySpec) -> list[tuple[str, str, str, str]]:
    """(label, centre arm, axis, option) of every option of the spec's ablation, in spec order."""
    if spec.ablate is None:
        return []
    arm = spec.ablate.arm
    return [(ablate_label(arm, axis, option), arm, axis, option)
            for axis, options in spec.ablate.axes.items() for option in options]


def ablate_seeds(spec: StudySpec) -> list[int]:
    """The seeds every ablation option runs on: ``ablate.seeds``, or the confirmation seeds when null."""
    if spec.ablate is None:
        return []
    return list(spec.ablate.seeds if spec.ablate.seeds is not None else spec.confirm.seeds)
