"""The study spec as data: one YAML file that says what a study searches, how it ranks a trial and how it
confirms the winners, with everything the spec alone decides. Imports diffctl only; every phase of the study
(``study.phases``) and the analysis read the spec through this package.

- ``schema``: every section's model (distributions, objectives, ASHA, confirmation, PBT, ablation, arms);
- ``load``: reading a spec file or a study's saved ``spec.yaml``; ``checks``: the checks against diffctl (the metric
  check against a real epoch is ``study.probe``: this package trains nothing);
- ``configs``: the diffctl config of each trial, and the epochs evaluated in full;
- ``plan``: the phases, the arm labels each phase runs and their trial counts;
- ``ranking``: how every stage ranks trials (objectives, constraints, selection);
- ``space``, ``trees``, ``constraints``, ``errors``: the pieces these share.

Example::

    spec = load_spec("study/specs/quick.yaml")
    spec.arms["fixed"].budget                                   # 4
    trial_config(spec, "fixed", {"arm.w_kl": 0.2}, seed=1001)["arm"]   # {'kind': 'fixed', 'w_kl': 0.2}
"""

from .configs import trial_config
from .constraints import Constraint, parse_constraint
from .errors import SpecError
from .load import SPEC_FILE, check_resources, dump_spec, load_spec, read_spec_file, saved_spec, spec_from_dict
from .schema import ArmSpec, Objective, StudySpec

__all__ = ["SPEC_FILE", "ArmSpec", "Constraint", "Objective", "SpecError", "StudySpec", "check_resources",
           "dump_spec", "load_spec", "parse_constraint", "read_spec_file", "saved_spec", "spec_from_dict",
           "trial_config"]
