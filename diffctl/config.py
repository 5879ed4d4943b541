"""The one configuration tree: the YAML a user writes, the config a Ray trial receives and an exported best
config are all this schema. Validated at load; every error is one line that names the offending key.

Example::

    cfg = load_config("configs/fixed.yaml", ["optim.epochs=15", "arm.w_kl=0.2"])
    cfg.optim.epochs  # 15
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pydantic
import yaml
from pydantic import Field

from .arms import ARM_CLASSES, ArmOptions
from .errors import InputError
from .arms.fixed import FixedOptions
from .schema import Section

MAX_EPOCHS = 10_000


class ConfigError(InputError):
    """Bad configuration input; its message is one line naming the offending key or argument."""


class DataConfig(Section):
    split_seed: int = Field(42, ge=0, le=2**31 - 1)
    batch_size: int = Field(256, ge=8, le=15_746)


class ModelConfig(Section):
    latent_dim: int = Field(16, ge=2, le=256)
    temperature: float = Field(1.0, gt=0.0, le=10.0)


class LossConfig(Section):
    free_bits: float = Field(0.5, ge=0.0, le=100.0)
    margin: float = Field(0.1, ge=0.0, le=100.0)
    max_triples: int = Field(500, ge=1, le=100_000)
    # Upstream extras, off by default: a VAE-B batch-marginal output-entropy bonus and an RBF repulsion on z_B.
    b_marginal_entropy: float = Field(0.0, ge=0.0, le=100.0)
    b_repulsion: float = Field(0.0, ge=0.0, le=100.0)
    repulsion_sigma: float = Field(0.5, gt=0.0, le=100.0)


class OptimConfig(Section):
    epochs: int = Field(20, ge=1, le=MAX_EPOCHS)
    lr: float = Field(1e-3, gt=0.0, le=10.0)
    weight_decay: float = Field(1e-4, ge=0.0, le=10.0)
    clip: float = Field(1.0, gt=0.0, le=1e6)
    threads: int = Field(1, ge=1, le=256)


class EvalConfig(Section):
    seed: int = Field(0, ge=0, le=2**31 - 1)
    prior_samples: int = Field(50_000, ge=1, le=10_000_000)
    triplet_indices: int = Field(5_000, ge=3, le=19_683)
    # 20,000 triples: the standard error of r is ~0.003 (1,000 triples give ~0.014, as large as arm differences).
    triplets: int = Field(20_000, ge=1, le=10_000_000)


class Config(Section):
    seed: int = Field(0, ge=0, le=2**31 - 1)
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    optim: OptimConfig = OptimConfig()
    arm: ArmOptions = FixedOptions()
    eval: EvalConfig = EvalConfig()
    # Where an exported config came from (diffctl export); training ignores it.
    provenance: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="python")


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` as a float (YAML 1.1 wants ``1.0e-3``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def parse_yaml(text: str | bytes, source: str) -> Any:
    """Parse YAML text safely; a syntax or encoding problem becomes a one-line :class:`ConfigError`."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{source}: not UTF-8 text (byte {exc.start})") from None
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigError(f"{source}: invalid YAML{where}: {problem}") from None


def read_yaml_file(path: str | Path) -> Any:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    return parse_yaml(raw, str(path))


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``key.path=value`` overrides (value parsed as YAML) to a nested dict, in place."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"--set {item!r}: expected key.path=value")
        node = data
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: {'.'.join(parts[: depth + 1])} is not a section")
            node = child
        node[parts[-1]] = parse_yaml(value, f"--set {key}")
    return data


def format_validation_error(err: dict) -> str:
    """One line naming the offending key of one pydantic error (``ValidationError.errors()`` entry)."""
    loc = [str(p) for p in err["loc"]]
    # A tagged union puts the arm kind into the location ('arm', 'fixed', 'rho'): drop it.
    if len(loc) >= 2 and loc[0] == "arm" and loc[1] in ARM_CLASSES:
        loc = [loc[0]] + loc[2:]
    key = ".".join(loc) or "config"
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"{key}: unknown key"
    if kind == "union_tag_invalid":
        return f"{key}.kind: unknown arm kind {err['input'].get('kind')!r} (known: {', '.join(ARM_CLASSES)})"
    if kind == "union_tag_not_found":
        return f"{key}.kind: missing (known: {', '.join(ARM_CLASSES)})"
    value = err.get("input")
    shown = repr(value) if not isinstance(value, dict) else "a mapping"
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{key}: {err['msg'][0].lower()}{err['msg'][1:]} (got {shown})"


def config_from_dict(data: Any) -> Config:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config: expected a mapping of sections, got {type(data).__name__}")
    try:
        return Config.model_validate(data)
    except pydantic.ValidationError as exc:
        raise ConfigError(format_validation_error(exc.errors()[0])) from None


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Config:
    """Load and validate a config from YAML (or the defaults when ``path`` is None), then apply overrides."""
    data = read_yaml_file(path) if path is not None else {}
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(data).__name__}")
    apply_overrides(data, overrides or [])
    return config_from_dict(data)


def dump_config(config: Config) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
