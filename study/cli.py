"""``diffctl study run | check | resume | status | dashboard | spec show``: the study subcommands (argparse lives in
``diffctl/cli.py``).

``run`` and ``resume`` return the study directory; the command line (``diffctl/cli.py``) then prints it and runs
the analysis, so that this layer never imports pandas. Bad input raises :class:`diffctl.errors.InputError` before anything is created.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from diffctl.errors import InputError
from diffctl.filekind import refuse_config

SHIPPED_SPECS = Path(__file__).resolve().parent / "specs"


def spec_path(spec: str) -> str:
    """``spec`` when it is a file or a path; a bare name NAME is the shipped ``study/specs/NAME.yaml``."""
    if os.path.exists(spec) or Path(spec).name != spec or Path(spec).suffix in (".yaml", ".yml"):
        return spec
    shipped = SHIPPED_SPECS / f"{spec}.yaml"
    if shipped.is_file():
        return str(shipped)
    names = ", ".join(sorted(p.stem for p in SHIPPED_SPECS.glob("*.yaml")))
    raise InputError(f"{spec}: no such file, and no shipped spec of that name (shipped: {names})")


def main(args: argparse.Namespace) -> Path | None:
    """Dispatch ``args.study_command``; returns the study directory after run/resume, None after the others."""
    if args.study_command == "status":
        from .status import status_lines, storage_lines

        directory = Path(args.dir).absolute()
        print("\n".join(storage_lines(directory) or status_lines(directory)))
        return None
    if args.study_command == "spec":
        from .protocol.show import spec_reference_lines

        print("\n".join(spec_reference_lines()))
        return None
    if args.study_command == "check":
        from .check import check_command

        spec = spec_path(args.spec)
        refuse_config(spec)
        check_command(spec, name=args.name, storage=args.storage, max_concurrent=args.max_concurrent)
        return None
    if args.study_command == "dashboard":
        from .dashboard import dashboard_command

        dashboard_command(args.dir, args.host, args.port)
        return None
    from .runner import resume_study, run_study

    if args.study_command == "run":
        spec = spec_path(args.spec)
        refuse_config(spec)
        study_dir = run_study(
            spec, name=args.name, storage=args.storage, address=args.address, max_concurrent=args.max_concurrent
        )
    elif args.study_command == "resume":
        study_dir = resume_study(args.dir, address=args.address)
    else:
        raise InputError(f"study: unknown command {args.study_command!r}")
    return study_dir
