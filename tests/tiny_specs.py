"""The tiny study spec and helpers shared by the study tests (test_spec, test_study, test_cluster).

TINY is ``study/specs/tiny.yaml``: 2 arms x 2 trials x 2 epochs, confirmation of each arm's best search trial
on 2 seeds; the ``lr`` arm's two trials are one diverging (lr = 10) and one sane (lr = 1e-3, with a key sampled
only under it).
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import yaml

TINY_SPEC = Path(__file__).resolve().parents[1] / "study" / "specs" / "tiny.yaml"
TINY = yaml.safe_load(TINY_SPEC.read_text(encoding="utf-8"))


def spec_variant(**changes) -> dict:
    """A deep copy of TINY with top-level keys replaced."""
    spec = copy.deepcopy(TINY)
    spec.update(copy.deepcopy(changes))
    return spec


def write_spec(directory: Path, spec: dict, name: str = "spec.yaml") -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


DIFFCTL = str(Path(sys.executable).with_name("diffctl"))


def diffctl_env() -> dict[str, str]:
    """The environment for a ``diffctl`` subprocess: no inherited Ray address."""
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    return env


def cluster_env() -> dict[str, str]:
    """The environment for a loopback test cluster and its drivers, without Ray's token authentication: Ray turns
    it on by default for a new head when a token file exists, but never for a driver given an explicit address
    (that needs RAY_AUTH_MODE=token)."""
    return dict(diffctl_env(), RAY_AUTH_MODE="disabled")


def run_diffctl(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [DIFFCTL, *args], capture_output=True, text=True, timeout=timeout, env=diffctl_env(), check=False
    )


def run_study(root: Path, spec: dict, timeout: float = 900) -> Path:
    """``diffctl study run`` of ``spec`` (written under ``root``) into ``root/results``; the study's directory."""
    done = run_diffctl("study", "run", str(write_spec(root, spec)), "--storage", str(root / "results"),
                       timeout=timeout)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return root / "results" / spec["name"]
