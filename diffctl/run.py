"""``diffctl train``: run one config and write config.yaml, metrics.jsonl (as it goes) and model.pt."""

from __future__ import annotations

import sys
from pathlib import Path

from .config import dump_config, load_config
from .errors import EXIT_DIVERGED, EXIT_OK, InputError
from .files import atomic_torch_save, atomic_write_jsonl, atomic_write_text
from .train import STATUS_DIVERGED, Trainer


def out_dir_guard(path: str | Path, flag: str = "--out") -> Path:
    """Resolve an output directory that must not exist or must be empty; its missing parents may be created (nothing
    is created here), so the nearest existing ancestor must be a directory."""
    out = Path(path).absolute()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{flag} {path}: exists and is not an empty directory")
    existing = next(p for p in out.parents if p.exists())
    if not existing.is_dir():
        raise InputError(f"{flag} {path}: {existing} is not a directory")
    return out


def progress_line(record: dict, epochs: int) -> str:
    if record["status"] == STATUS_DIVERGED:
        return f"epoch {record['epoch']}/{epochs}  DIVERGED: {record['reason']}"
    return (
        f"epoch {record['epoch']}/{epochs}  loss {record['train_loss_weighted']:.3f}  "
        f"nelbo {record['val_loss_unweighted']:.2f}  "
        f"exact A {record['val_exact_match_A']:.3f} B {record['val_exact_match_B']:.3f}  "
        f"cov A {_shown(record['recon_coverage_A'])} B {_shown(record['recon_coverage_B'])}  "
        f"r A {_shown(record['triplet_r_A'])} B {_shown(record['triplet_r_B'])}  "
        f"({record['epoch_time_s']:.2f}s + eval {record['eval_time_s']:.2f}s)"
    )


def _shown(value: float | None) -> str:
    """A metric of the full set, or '-' at an epoch evaluated without it."""
    return "  -  " if value is None else f"{value:.3f}"


def train_command(config_path: str, overrides: list[str], out: str, quiet: bool = False) -> int:
    config = load_config(config_path, overrides)
    out_dir = out_dir_guard(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "config.yaml", dump_config(config))
    trainer = Trainer(config)
    records: list[dict] = []
    while not trainer.finished:
        record = trainer.run_epoch()
        records.append(record)
        atomic_write_jsonl(out_dir / "metrics.jsonl", records)
        if not quiet:
            print(progress_line(record, config.optim.epochs), flush=True)
    atomic_torch_save(out_dir / "model.pt", {"model": trainer.model.state_dict(), "arm": trainer.arm.state_dict()})
    if records[-1]["status"] == STATUS_DIVERGED:
        print(f"diffctl: diverged: {records[-1]['reason']}", file=sys.stderr)
        return EXIT_DIVERGED
    if not quiet:
        print(f"wrote {out_dir}/config.yaml, metrics.jsonl, model.pt")
    return EXIT_OK
