"""The one configuration tree: the YAML a user writes, the config a Ray trial receives and an exported best
config are all this schema. Validated at load; every error is one line that names the offending key.

Example::

    cfg = load_config("configs/fixed.yaml", ["optim.epochs=15", "arm.w_kl=0.2"])
    cfg.optim.epochs  # 15
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import pydantic
import yaml
from pydantic import Field

from .arms import ARM_CLASSES, ArmOptions
from .errors import InputError
from .arms.fixed import FixedOptions
from .schema import Section
from .suggest import unknown_key_hint

MAX_EPOCHS = 10_000


class ConfigError(InputError):
    """Bad configuration input; its message is one line naming the offending key or argument."""


class DataConfig(Section):
    split_seed: int = Field(
        42, ge=0, le=2**31 - 1, description="seed of the train/val/test split (80/10/10) of the 19,683 operations"
    )
    batch_size: int = Field(
        256, ge=8, le=15_746, description="training batch size (at most the 15,746 training operations)"
    )


class ModelConfig(Section):
    latent_dim: int = Field(16, ge=2, le=256, description="latent dimensions of each VAE")
    temperature: float = Field(
        1.0, gt=0.0, le=10.0, description="scale of the sampling noise: z = mu + temperature * sigma * eps"
    )


class LossConfig(Section):
    free_bits: float = Field(
        0.5, ge=0.0, le=100.0, description="KL floor per latent dimension, in nats (no gradient below it)"
    )
    margin: float = Field(0.1, ge=0.0, le=100.0, description="margin of the 3-adic triplet ranking loss")
    max_triples: int = Field(500, ge=1, le=100_000, description="random triples per batch for the ranking loss")
    # Upstream extras, off by default: a VAE-B batch-marginal output-entropy bonus and an RBF repulsion on z_B.
    b_marginal_entropy: float = Field(
        0.0, ge=0.0, le=100.0, description="weight of a VAE-B batch-marginal output-entropy bonus (0: off)"
    )
    b_repulsion: float = Field(
        0.0, ge=0.0, le=100.0, description="weight of an RBF repulsion between VAE-B codes (0: off)"
    )
    repulsion_sigma: float = Field(0.5, gt=0.0, le=100.0, description="width of the RBF repulsion kernel")


class OptimConfig(Section):
    epochs: int = Field(20, ge=1, le=MAX_EPOCHS, description="training epochs (a study sets it from the spec's epochs)")
    lr: float = Field(1e-3, gt=0.0, le=10.0, description="learning rate of AdamW")
    weight_decay: float = Field(
        1e-4, ge=0.0, le=10.0, description="AdamW weight decay of the VAEs (an arm's parameters take none)"
    )
    clip: float = Field(1.0, gt=0.0, le=1e6, description="gradient-norm clip over all parameters, every step")
    threads: int = Field(1, ge=1, le=256, description="torch threads (a study sets it from the spec's cpus_per_trial)")


class EvalConfig(Section):
    seed: int = Field(
        0, ge=0, le=2**31 - 1, description="seed of the evaluation draws (validation z, prior samples, triples)"
    )
    prior_samples: int = Field(
        50_000, ge=1, le=10_000_000, description="prior samples decoded for sampled_coverage and prior_argmax_coverage"
    )
    triplet_indices: int = Field(
        5_000, ge=3, le=19_683, description="operations drawn for triplet_r and triplet_untied"
    )
    # 20,000 triples: the standard error of r is ~0.003 (1,000 triples give ~0.014, as large as arm differences).
    triplets: int = Field(
        20_000,
        ge=1,
        le=10_000_000,
        description="triples among them for triplet_r (ceiling ~0.75: half tie in v3), triplet_untied (the untied "
        "ones alone, ceiling 1), their standard errors and triplet_tie_share",
    )
    # The full set (coverage over all 19,683 operations, the prior samples, triplet_r, the collapse signals) costs
    # ~10x the cheap rest (the val split's loss, exact match, trit accuracy, KL): see diffctl.metrics.FULL_SET.
    full_every: int = Field(
        1, ge=1, le=MAX_EPOCHS, description="evaluate the full set every this many epochs (1: every epoch)"
    )
    full_epochs: list[Annotated[int, Field(ge=1, le=MAX_EPOCHS)]] = Field(
        [], description="epochs always evaluated in full, besides every full_every-th and the last"
    )
    # The held-out test split (diffctl.metrics.TEST_FIELDS): a study turns it on for every run but its search
    # trials, whose decisions read the val split alone.
    test_split: bool = Field(
        False,
        description="also compute the cheap fields on the held-out test split every epoch (test_loss_unweighted, "
        "test_exact_match, test_trit_acc, test_kl; a study: every run but the search trials)",
    )

    def full_at(self, epoch: int, epochs: int) -> bool:
        """Whether epoch ``epoch`` (1-based) of a run of ``epochs`` epochs is evaluated in full."""
        return epoch == epochs or epoch % self.full_every == 0 or epoch in self.full_epochs

    def check_epochs(self, epochs: int) -> None:
        """``full_epochs`` must lie within the run's 1..``epochs``; raises :class:`ConfigError` naming the key."""
        beyond = [e for e in self.full_epochs if e > epochs]
        if beyond:
            raise ConfigError(f"eval.full_epochs: epoch {beyond[0]} is beyond optim.epochs ({epochs})")


class Config(Section):
    seed: int = Field(
        0, ge=0, le=2**31 - 1, description="seed of the run: initialisation, sampling noise, batch order, triples"
    )
    data: DataConfig = Field(DataConfig(), description="the 19,683 operations: their split and the batches")
    model: ModelConfig = Field(ModelConfig(), description="the dual VAE")
    loss: LossConfig = Field(LossConfig(), description="the loss terms' own parameters (their weights are the arm's)")
    optim: OptimConfig = Field(OptimConfig(), description="training length and the AdamW optimiser")
    arm: ArmOptions = FixedOptions()
    eval: EvalConfig = Field(EvalConfig(), description="the evaluation after each epoch")
    # Where an exported config came from (diffctl export); training ignores it.
    provenance: dict[str, Any] | None = Field(None, description="where an exported config came from (diffctl export)")

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


def _display_key(loc: list) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


_ERROR_RANK = {"extra_forbidden": 0, "missing": 2}  # the rest: 1


def first_error(errors: list[dict]) -> dict:
    """The error a one-line message names (of ``ValidationError.errors()``): an unknown key first, as a misspelt
    key also leaves its required key missing, a missing key last, else pydantic's order."""
    return min(errors, key=lambda err: _ERROR_RANK.get(err["type"], 1))


def format_validation_error(err: dict, model: type[pydantic.BaseModel] | None = Config) -> str:
    """One line naming the offending key of one pydantic error (``ValidationError.errors()`` entry).

    ``model`` is the model that was validated: an unknown key is told the known key it most likely meant, or the
    keys known there (None: no hint)."""
    ctx = err.get("ctx") or {}
    # A check across a list's items (arm.segments) puts the item and key it found wrong into ctx['loc'].
    loc = full = [*err["loc"], *ctx.get("loc", ())]
    # A tagged union puts the arm kind into the location ('arm', 'fixed', 'rho'): drop it.
    if len(loc) >= 2 and loc[0] == "arm" and loc[1] in ARM_CLASSES:
        loc = [loc[0]] + loc[2:]
    key = _display_key(loc) or "config"
    kind = err["type"]
    if kind == "extra_forbidden":
        # The hint walks the location with the tag, which picks the arm's own keys.
        hint = unknown_key_hint(model, full, _display_key(loc[:-1])) if model is not None else ""
        return f"{key}: unknown key{hint}"
    if kind == "union_tag_invalid":
        return f"{key}.kind: unknown arm kind {err['input'].get('kind')!r} (known: {', '.join(ARM_CLASSES)})"
    if kind == "union_tag_not_found":
        return f"{key}.kind: missing (known: {', '.join(ARM_CLASSES)})"
    value = ctx.get("input", err.get("input"))
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
        config = Config.model_validate(data)
    except pydantic.ValidationError as exc:
        raise ConfigError(format_validation_error(first_error(exc.errors()))) from None
    config.eval.check_epochs(config.optim.epochs)
    return config


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
