"""What an ablation option makes of a centre (an arm's confirmed configuration, ``study.confirmed``): it runs, it
is the centre's own configuration, or it is not applicable there. The retune and ablation phases read it here.
"""

from __future__ import annotations

from typing import Any

from diffctl.config import ConfigError, config_from_dict

from .protocol.configs import trial_config
from .protocol.errors import SpecError
from .protocol.schema import StudySpec

RUNS, SAME, NOT_APPLICABLE = "runs", "same as the centre", "not applicable"


def _arm_section_inert(config: dict[str, Any]) -> dict[str, str]:
    """The arm keys that change nothing under the rest of a validated config (diffctl's ``inert_keys``)."""
    options = config_from_dict(config).arm
    return options.inert_keys() if hasattr(options, "inert_keys") else {}


def option_status(spec: StudySpec, arm: str, params: dict[str, Any], seed: int,
                  overrides: dict[str, Any]) -> tuple[str, str | None]:
    """(status, reason) of an ablation option around a centre (the arm's ``params`` on ``seed``): ``runs``, ``same
    as the centre`` (the same resolved config) or ``not applicable`` — diffctl refuses the config (the reason is
    its one-line error), or the option changes only keys that have no effect under the rest of it (a lookahead
    cadence under ``objective: same_loss``; the reason names them)."""
    centre = config_from_dict(trial_config(spec, arm, params, seed)).to_dict()
    try:
        option = config_from_dict(trial_config(spec, arm, params, seed, overrides)).to_dict()
    except (ConfigError, SpecError) as exc:
        return NOT_APPLICABLE, str(exc)
    if option == centre:
        return SAME, None
    changed = {k for k in set(centre) | set(option) if centre.get(k) != option.get(k)}
    if changed == {"arm"}:
        inert = _arm_section_inert(option)
        keys = sorted(k for k in set(centre["arm"]) | set(option["arm"]) if centre["arm"].get(k) != option["arm"].get(k))
        if keys and all(k in inert for k in keys):
            why = "; ".join(f"arm.{k} has no effect under arm.{inert[k].replace(' ', ': ', 1)}" for k in keys)
            return NOT_APPLICABLE, why
    return RUNS, None
