"""A phase of one's own with its report section, both defined in this file and registered at run time
(``study.phases.registry.register_phase``, ``analysis.sections.register_section``), run through a tiny study on a
local Ray in this process, then analysed: no other file is edited to add it.

The ``echo`` phase trains each arm's first finished confirmation run again on a seed of its own spec section
(``phases: {echo: {seed: N}}``), once that arm's confirmation has ended; its section counts the echo runs per arm.
"""

from __future__ import annotations

import sys

import pandas as pd
import pytest
import ray.cloudpickle
from pydantic import Field

from analysis.sections import SECTIONS, register_section, unregister_section
from analysis.sections.base import Section
from diffctl.cli import main
from diffctl.config import load_config
from diffctl.schema import Section as SpecSection
from study.phases.base import Phase, Place, Planned, TrialRequest
from study.phases.registry import phase_places, register_phase, total_trials, unregister_phase
from study.runner import run_study
from study.protocol import SpecError, load_spec
from study.status import status_lines
from study.check import checked_run
from study.trialdir import OK, read_metrics, read_trials
from tiny_specs import spec_variant, write_spec

pytestmark = pytest.mark.slow
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray's workers get the phase by value
ECHO_SEED = 4242


class EchoOptions(SpecSection):
    """The echo phase's section of a spec."""

    seed: int = Field(ge=0, le=2**31 - 1, description="the seed every echo run trains with")


class EchoPhase(Phase):
    """Each arm's first finished confirmation run trained again on the section's seed."""

    name = "echo"
    section = EchoOptions
    test_split = True

    def places(self, spec):
        if self.name not in spec.phases:
            return []
        return [Place(self.name, arm, arm, (("confirm", arm),)) for arm in spec.arms]

    def bound(self, spec, place):
        return 1

    def plan(self, spec, study_dir, place):
        confirmed = [t for t in read_trials(study_dir / "confirm" / place.label) if t.status == OK]
        if not confirmed:
            return Planned([], [f"echo {place.label}: no finished confirmation run"])
        source = confirmed[0]
        return Planned([TrialRequest(phase=self.name, arm=place.label, name=f"{source.trial_id}-echo",
                                     params=source.info.params, seed=self.options(spec).seed,
                                     source_trial=source.trial_id, source_feasible=source.info.source_feasible,
                                     replicate=source.info.replicate)])


class EchoSection(Section):
    """The echo runs per arm."""

    def __init__(self) -> None:
        super().__init__("echo", "Echo runs", tables=("echo_runs",))

    def compute(self, study, computed):
        echo = study.trials[study.trials["phase"] == "echo"]
        return {"echo_runs": echo.groupby("arm").size().rename("runs").reset_index()}

    def render(self, study, computed):
        runs = computed["echo_runs"]
        return f"{int(runs['runs'].sum())} echo runs over {len(runs)} arm(s).\n"


SPEC = spec_variant(name="echo", phases={"echo": {"seed": ECHO_SEED}})


@pytest.fixture
def registered():
    register_phase(EchoPhase(), after="confirm")
    register_section(EchoSection(), after="confirm")
    try:
        yield
    finally:
        unregister_phase("echo")
        unregister_section("echo")


def test_an_unregistered_phase_or_a_bad_section_is_one_line(tmp_path, registered):
    for phases, expected in [({"ecko": {"seed": 1}}, "phases.ecko: no such phase (did you mean 'echo'?"),
                             ({"echo": {"sed": 1}}, "phases.echo.sed: unknown key"),
                             ({"echo": {"seed": -1}}, "phases.echo.seed: ")]:
        path = write_spec(tmp_path, spec_variant(phases=phases))
        with pytest.raises(SpecError, match=None) as caught:
            checked_run(str(path), name=None, storage=str(tmp_path / "results"), max_concurrent=None)
        assert str(caught.value).startswith(expected) and "\n" not in str(caught.value)


def test_without_its_registration_a_phase_section_is_refused(tmp_path):
    path = write_spec(tmp_path, SPEC)
    with pytest.raises(SpecError, match=r"^phases\.echo: no such phase \(.*known: search, front, confirm"):
        checked_run(str(path), name=None, storage=str(tmp_path / "results"), max_concurrent=None)


def test_a_phase_of_ones_own_runs_and_reports(tmp_path, registered):
    path = write_spec(tmp_path, SPEC)
    spec = load_spec(path)
    assert [p for p in phase_places(spec) if p[0] == "echo"] == [("echo", arm) for arm in spec.arms]
    assert total_trials(spec) == 4 + 2 * 2 + 2  # search, confirmation, one echo per arm
    study_dir = run_study(str(path), name=None, storage=str(tmp_path / "results"), address=None, max_concurrent=None)

    echoes = {arm: read_trials(study_dir / "echo" / arm) for arm in spec.arms}
    confirmed = {arm: [t for t in read_trials(study_dir / "confirm" / arm) if t.status == OK] for arm in spec.arms}
    for arm, runs in echoes.items():
        assert len(runs) == (1 if confirmed[arm] else 0)
        for run in runs:  # what the phase asked for, through the trainable, into trial.json and config.yaml
            source = confirmed[arm][0]
            assert run.status == OK and run.info.phase == "echo" and run.info.seed == ECHO_SEED
            assert run.info.source_trial == source.trial_id and run.info.params == source.info.params
            assert load_config(run.dir / "config.yaml").eval.test_split is True  # the phase's test_split
            assert "test_loss_unweighted" in read_metrics(run.dir)[-1]
    ran = sum(len(runs) for runs in echoes.values())
    assert ran >= 1
    lines = status_lines(study_dir)
    assert sum(line.split()[:3] == ["echo", arm, "done"] for line in lines for arm in spec.arms) == len(spec.arms)

    assert main(["analyze", str(study_dir)]) == 0
    report = (study_dir / "report.md").read_text(encoding="utf-8")
    headings = [line[3:] for line in report.splitlines() if line.startswith("## ")]
    confirm_title = next(s.title for s in SECTIONS if s.key == "confirm")
    assert headings[headings.index(confirm_title) + 1] == "Echo runs"
    table = pd.read_csv(study_dir / "tables" / "echo_runs.csv")
    trials = pd.read_parquet(study_dir / "trials.parquet")
    expected = trials[trials["phase"] == "echo"].groupby("arm").size()
    assert dict(zip(table["arm"], table["runs"])) == expected.to_dict() and int(table["runs"].sum()) == ran
    assert f"{ran} echo runs over {len(table)} arm(s)." in report
