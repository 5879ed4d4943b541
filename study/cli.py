"""``diffctl study run | resume | status``: the study subcommands (argparse lives in ``diffctl/cli.py``).

``run`` and ``resume`` end with the analysis of the study directory when the ``analysis`` layer is installed,
else they print the directory. Bad input raises :class:`diffctl.errors.InputError` before anything is created.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from diffctl.errors import InputError


def main(args: argparse.Namespace) -> int:
    """Dispatch ``args.study_command``; returns the exit status."""
    if args.study_command == "status":
        from .state import status_lines

        print("\n".join(status_lines(Path(args.dir).absolute())))
        return 0
    from .runner import resume_study, run_study

    if args.study_command == "run":
        study_dir = run_study(
            args.spec, name=args.name, storage=args.storage, address=args.address, max_concurrent=args.max_concurrent
        )
    elif args.study_command == "resume":
        study_dir = resume_study(args.dir, address=args.address)
    else:
        raise InputError(f"study: unknown command {args.study_command!r}")
    return finish(study_dir)


def finish(study_dir: Path) -> int:
    """Print the study directory, then analyse it when the analysis layer exists."""
    print(f"study directory: {study_dir}", flush=True)
    try:
        found = importlib.util.find_spec("analysis.cli") is not None
    except ModuleNotFoundError:
        found = False
    if not found:
        return 0
    import analysis.cli as analysis_cli

    return analysis_cli.analyze_command(str(study_dir))
