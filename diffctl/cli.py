"""The ``diffctl`` command line: train | gradcheck | study run/check/resume/status/spec | analyze | fronts | export
| reproduce | config.

The top floor of the project: it may reach every layer, but imports ``study`` (Ray, Optuna) and ``analysis``
(pandas) only inside the subcommands that need them, so ``diffctl train`` never pays for importing Ray.
Exit codes: 0 done, 1 a check failed (reproduce), 2 bad input, 3 diverged, 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_OK, InputError

DESCRIPTION = """Differentiable training controllers for a dual VAE: train one config, check where the gradient
reaches, run Ray Tune + Optuna studies of the arms and read their results."""
EPILOG = """exit codes:
  0    done
  1    a check failed (reproduce: the objective differs by more than --tolerance)
  2    bad input: one line naming the key, argument or file; nothing written
  3    diverged (train: the records so far are kept, the last one says why)
  130  interrupted (an interrupted study continues with: diffctl study resume DIR)

diffctl COMMAND --help describes a command; diffctl config show lists every config key, diffctl study spec
show every study spec key."""
SET_HELP = (
    "override one config key: KEY=VALUE as one argument, e.g. optim.epochs=15 or arm.stats=[KL_A,KL_B] (the value "
    "is read as YAML); repeat --set for several keys"
)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line and exit status 2, naming the subcommand (not 'diffctl')."""

    def error(self, message: str) -> None:  # type: ignore[override]
        command = self.prog.removeprefix("diffctl").strip()
        raise InputError(f"{command}: {message}" if command else message)


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="YAML config file (diffctl config show: every key)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP)


def _study_parsers(sub) -> None:
    p = sub.add_parser("study", help="Ray Tune + Optuna studies", description="Run, resume and inspect studies.")
    study_sub = p.add_subparsers(dest="study_command", required=True, parser_class=_Parser)
    description = (
        "Run a study: every arm's Optuna search, then each arm's best configuration on fresh seeds, in STORAGE/NAME/;"
        " then the analysis (report.md, tables, plots) of that directory."
    )
    q = study_sub.add_parser("run", help="run a study spec, then its analysis", description=description)
    q.add_argument("spec", help="study spec YAML, or the name of a shipped one (tiny, quick: study/specs/NAME.yaml)")
    q.add_argument("--name", help="study name (default: the spec's name)")
    q.add_argument("--storage", default="results",
                   help="directory holding studies, created if missing (default ./results); on a cluster, a path "
                        "every node sees")  # fmt: skip
    q.add_argument("--address", help="Ray cluster address, e.g. HEAD:6379 (default: RAY_ADDRESS, else a local Ray)")
    q.add_argument("--max-concurrent", type=int, help="override the spec's concurrency")
    q = study_sub.add_parser("check", help="check a spec as study run would and print its plan; runs nothing",
                             description="Load and check a study spec as diffctl study run does before it starts "
                                         "(every trial config, every ablation value, every metric against a one-step "
                                         "probe epoch, the study directory), then print the plan: per phase and "
                                         "arm the most trials and trial-epochs. Runs no trial, writes nothing, "
                                         "starts no Ray.")  # fmt: skip
    q.add_argument("spec", help="study spec YAML, or the name of a shipped one (tiny, quick: study/specs/NAME.yaml)")
    q.add_argument("--name", help="study name (default: the spec's name)")
    q.add_argument("--storage", default="results", help="directory holding studies (default ./results)")
    q.add_argument("--max-concurrent", type=int, help="override the spec's concurrency")
    q = study_sub.add_parser("spec", help="the study spec reference", description="Study spec reference commands.")
    spec_sub = q.add_subparsers(dest="spec_command", required=True, parser_class=_Parser)
    spec_sub.add_parser("show", help="every spec section and key: type, default, range, meaning",
                        description="Every section and key of a study spec with its type, default, range and "
                                    "meaning, read from the schema that validates specs.")  # fmt: skip
    description = "Continue an interrupted study (finished trials never rerun), then analyse it."
    q = study_sub.add_parser("resume", help="resume an interrupted study, then its analysis", description=description)
    q.add_argument("dir", help="study directory")
    q.add_argument("--address", help="Ray cluster address")
    q = study_sub.add_parser("status", help="trials done / running / failed per arm, best so far",
                             description="Per arm and phase: trials ok, stopped, diverged, failed, running, and the "
                                         "best so far. Given a folder of studies, lists them.")  # fmt: skip
    q.add_argument("dir", help="a study directory, or a folder of studies (such as results)")
    q = study_sub.add_parser("dashboard", help="serve a study's Optuna journal with optuna-dashboard (read-only)",
                             description="Serve STUDY_DIR/optuna.journal (one Optuna study per arm) with "
                                         "optuna-dashboard, read-only: safe on a running study. Prints the URL, "
                                         "serves until Ctrl-C.")  # fmt: skip
    q.add_argument("dir", help="study directory")
    q.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080; 0: any free port)")
    q.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="diffctl", description=DESCRIPTION, epilog=EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    description = (
        "Train one config; write into --out config.yaml (the resolved config), metrics.jsonl (one record per epoch,"
        " as it goes) and model.pt."
    )
    p = sub.add_parser("train", help="train one config, writing config.yaml, metrics.jsonl, model.pt",
                       description=description)  # fmt: skip
    _config_args(p)
    p.add_argument("--out", required=True, help="output directory: new or empty; missing parents are created")
    p.add_argument("--quiet", action="store_true", help="no per-epoch progress lines")

    description = (
        "On one training batch of a fresh run (at the first epoch whose control comes from the controller, after a "
        "hold or blend warm-up), print the norm of the gradient reaching the arm's parameters through each output "
        "(rho and the four weights) and how many parameters receive one. Writes nothing."
    )
    p = sub.add_parser("gradcheck", help="gradient norms reaching the controller's outputs on one batch",
                       description=description)  # fmt: skip
    _config_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")

    _study_parsers(sub)

    outputs = "trials.parquet, epochs.parquet, tables/*.csv, plots/*.png and report.md"
    p = sub.add_parser("analyze", help=f"write {outputs} into a study directory",
                       description=f"Write {outputs} into the study directory (replacing earlier ones) and print "
                                   "the report's path. diffctl study run and resume already do this.")  # fmt: skip
    p.add_argument("dir", help="study directory")

    p = sub.add_parser("fronts", help="place one study's front against another's at equal rate",
                       description="Read the front of two studies (their specs' `front:`), place every point of "
                                   "OTHER's against REFERENCE's at its own rate, and write OTHER/tables/fronts.csv "
                                   "and OTHER/plots/fronts.png (both fronts drawn on rate x selection metric).")
    p.add_argument("reference", help="study directory whose front is the reference (e.g. the fixed-λ front)")
    p.add_argument("other", help="study directory whose front is placed against it; the outputs go here")

    p = sub.add_parser("export", help="write the best configuration of a study, with provenance")
    p.add_argument("dir", help="study directory")
    p.add_argument("--arm", help="arm to export (default: the best arm)")
    p.add_argument("--out", required=True, help="output YAML file: a diffctl config (train it, or reproduce it)")

    p = sub.add_parser("reproduce", help="retrain an exported config and compare its objective")
    p.add_argument("file", help="exported YAML (from diffctl export)")
    p.add_argument("--tolerance", type=float, default=0.0,
                   help="allowed absolute difference on the file's objective (provenance.objective.metric, e.g. "
                        "triplet_r_A, at provenance.objective.epoch); default 0: exact")  # fmt: skip

    p = sub.add_parser("config", help="the config reference", description="Config reference commands.")
    config_sub = p.add_subparsers(dest="config_command", required=True, parser_class=_Parser)
    q = config_sub.add_parser("show", help="every config key: type, default, range, meaning",
                              description="Every config key with its type, default, range and meaning, read from "
                                          "the schema that validates configs.")  # fmt: skip
    q.add_argument("--arm", metavar="KIND", help="only this arm kind's options (default: every kind)")
    return parser


def _run(args: argparse.Namespace) -> int:
    if args.command in ("train", "gradcheck", "reproduce"):  # a study spec given where a config belongs
        from .filekind import refuse_study_spec

        refuse_study_spec(*((args.file, "") if args.command == "reproduce" else (args.config, "--config")))
    if args.command == "train":
        from .run import train_command

        return train_command(args.config, args.overrides, args.out, quiet=args.quiet)
    if args.command == "gradcheck":
        from .gradcheck import gradcheck_command

        return gradcheck_command(args.config, args.overrides, as_json=args.json)
    if args.command == "config":
        from .config_reference import reference_lines

        print("\n".join(reference_lines(args.arm)))
        return EXIT_OK
    if args.command == "study" and args.study_command == "status" and _published(args.dir):
        from analysis.published_status import published_status_lines  # a published study is read from its tables

        print("\n".join(published_status_lines(Path(args.dir).absolute()) or []))
        return EXIT_OK
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
    if args.command == "fronts":
        import analysis.fronts as fronts

        return fronts.fronts_command(args.reference, args.other)
    if args.command == "export":
        import analysis.export as export

        return export.export_command(args.dir, args.arm, args.out)
    if args.command == "reproduce":
        from .reproduce import reproduce_command

        return reproduce_command(args.file, args.tolerance)
    raise InputError(f"unknown command {args.command!r}")


def _published(directory: str) -> bool:
    """A published study directory (``study.state.is_published``)."""
    from study.state import is_published

    return is_published(Path(directory))


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return _run(args)
    except InputError as exc:
        # one line whatever the input held: a key with a newline in it is shown escaped
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(exc))
        print(f"diffctl: error: {text}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("diffctl: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
