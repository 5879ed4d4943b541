"""``diffctl study run | resume | status``: the study subcommands (argparse lives in ``diffctl/cli.py``).

``run`` and ``resume`` return the study directory; the command line (``diffctl/cli.py``) then prints it and runs
the analysis, so that this layer never imports pandas. Bad input raises :class:`diffctl.errors.InputError` before anything is created.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from diffctl.errors import InputError


def main(args: argparse.Namespace) -> Path | None:
    """Dispatch ``args.study_command``; returns the study directory after run/resume, None after status."""
    if args.study_command == "status":
        from .state import status_lines

        print("\n".join(status_lines(Path(args.dir).absolute())))
        return None
    from .runner import resume_study, run_study

    if args.study_command == "run":
        study_dir = run_study(
            args.spec, name=args.name, storage=args.storage, address=args.address, max_concurrent=args.max_concurrent
        )
    elif args.study_command == "resume":
        study_dir = resume_study(args.dir, address=args.address)
    else:
        raise InputError(f"study: unknown command {args.study_command!r}")
    return study_dir
