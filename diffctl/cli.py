"""The ``diffctl`` command line: train | gradcheck | study run/resume/status | analyze | export | reproduce.

The top floor of the project: it may reach every layer, but imports ``study`` (Ray, Optuna) and ``analysis``
(pandas) only inside the subcommands that need them, so ``diffctl train`` never pays for importing Ray.
Exit codes: 0 done, 1 a check failed (reproduce), 2 bad input, 3 diverged, 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys

from .errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_OK, InputError


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise InputError(f"{self.prog}: {message}")


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="YAML config file")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE", help="override a key"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="diffctl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("train", help="train one config, writing config.yaml, metrics.jsonl, model.pt")
    _config_args(p)
    p.add_argument("--out", required=True, help="output directory (must not exist or be empty)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch progress lines")

    p = sub.add_parser("gradcheck", help="gradient norms reaching the controller's outputs on one batch")
    _config_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser("study", help="Ray Tune + Optuna studies")
    study_sub = p.add_subparsers(dest="study_command", required=True, parser_class=_Parser)
    q = study_sub.add_parser("run", help="run a study spec")
    q.add_argument("spec", help="study spec YAML")
    q.add_argument("--name", help="study name (default: the spec's name)")
    q.add_argument("--storage", default="results", help="directory holding studies (default ./results)")
    q.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a local embedded Ray)")
    q.add_argument("--max-concurrent", type=int, help="override the spec's concurrency")
    q = study_sub.add_parser("resume", help="resume an interrupted study")
    q.add_argument("dir", help="study directory")
    q.add_argument("--address", help="Ray cluster address")
    q = study_sub.add_parser("status", help="trials done / running / failed per arm, best so far")
    q.add_argument("dir", help="study directory")

    p = sub.add_parser("analyze", help="tables, comparisons, plots and report.md of a study directory")
    p.add_argument("dir", help="study directory")

    p = sub.add_parser("export", help="write the best configuration of a study, with provenance")
    p.add_argument("dir", help="study directory")
    p.add_argument("--arm", help="arm to export (default: the best arm)")
    p.add_argument("--out", required=True, help="output YAML file")

    p = sub.add_parser("reproduce", help="retrain an exported config and compare its objective")
    p.add_argument("file", help="exported YAML (from diffctl export)")
    p.add_argument("--tolerance", type=float, default=0.0, help="allowed absolute difference (default exact)")
    return parser


def _run(args: argparse.Namespace) -> int:
    if args.command == "train":
        from .run import train_command

        return train_command(args.config, args.overrides, args.out, quiet=args.quiet)
    if args.command == "gradcheck":
        from .gradcheck import gradcheck_command

        return gradcheck_command(args.config, args.overrides, as_json=args.json)
    if args.command == "study":
        import study.cli as study_cli

        study_dir = study_cli.main(args)
        if study_dir is None:
            return EXIT_OK
        print(f"study directory: {study_dir}", flush=True)
        import analysis.cli as analysis_cli

        return analysis_cli.analyze_command(str(study_dir))
    if args.command == "analyze":
        import analysis.cli as analysis_cli

        return analysis_cli.analyze_command(args.dir)
    if args.command == "export":
        import analysis.export as export

        return export.export_command(args.dir, args.arm, args.out)
    if args.command == "reproduce":
        from .reproduce import reproduce_command

        return reproduce_command(args.file, args.tolerance)
    raise InputError(f"unknown command {args.command!r}")


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return _run(args)
    except InputError as exc:
        print(f"diffctl: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("diffctl: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
