"""The ``gmbench`` command line (``docs/CONTRACT.md``, section 7)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from gmbench.core.errors import GmbenchError, ModelError, warn
from gmbench.core.names import printable, printable_lines
from gmbench.run.request import metric_list

__all__ = ["main"]


STORED_SUFFIXES = (".npz", ".npy")


def _wrapped(text: str) -> str:
    """A note folded to the width the tables fit (paths are not broken)."""
    from gmbench.present.format import fold

    return "\n".join(fold(text))


def _stored_samples(target: Path) -> bool:
    """Whether ``gmbench evaluate TARGET`` names stored samples (a ``.npz``, a ``.npy``, a
    folder: never a model file) rather than a model file; a file that is neither a ``.py``
    nor stored samples is refused, saying what each would be."""
    if target.suffix.lower() in STORED_SUFFIXES or target.is_dir():
        return True
    if target.suffix in (".py", ".pyc") or not target.is_file():
        return False  # a model file; one that does not exist gets the model file's error
    from gmbench.models.stored import numpy_suffix

    kind = numpy_suffix(target)
    if kind is not None:
        raise ModelError(f"{target} is a NumPy {kind} file named without its suffix; stored "
                         f"samples are read from files named .npy or .npz (rename it "
                         f"{target.name}{kind}), or from a folder of .png images.")
    raise ModelError(f"{target} is neither a model file nor stored samples: pass a Python file "
                     "(.py) that defines `load(dataset, device)` or `model`, or stored "
                     "samples (a .npy or .npz file, or a folder of .png images).")


def cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    from gmbench.api import evaluate
    from gmbench.core.names import safe_filename
    from gmbench.run.outputs import check_out, check_parent, fuller_run
    from gmbench.run.request import given

    cwd = Path.cwd()  # --out is relative to where gmbench was started, whatever model code does
    if not args.out and not args.json:  # the default folder's parent, before the evaluation
        check_parent(cwd / "gmbench-out")
    if args.out:  # found before the evaluation, not after it
        check_out(cwd / args.out)
        lost = [] if args.overwrite else fuller_run(cwd / args.out,
                                                    getattr(args, "metrics", None))
        if lost:
            raise GmbenchError(f"--out {cwd / args.out} holds a run with metrics this run does "
                               f"not compute ({', '.join(lost[:8])}{' ...' * (len(lost) > 8)}); "
                               "writing would replace it. Pass another --out, or --overwrite "
                               "to replace it.")
    target = Path(args.model)
    stored = _stored_samples(target)
    options = given(args, "evaluate")
    results = evaluate(None if stored else target, samples=target if stored else None,
                       progress=not (args.quiet or args.json), **options)
    doc = results.document
    out = cwd / (args.out or Path("gmbench-out") / (
        f"{safe_filename(doc['model']['name'])}-{safe_filename(doc['dataset']['name'])}"))
    if not args.out and not args.overwrite:  # the default folder: a fuller run stays
        base, n = out, 1
        while fuller_run(out, list(doc["metrics"])):
            n += 1
            out = base.with_name(f"{base.name}-{n}")
        if out != base:
            warn(f"{base} holds a run with metrics this one did not compute; writing this run "
                 f"to {out} instead (--overwrite replaces it)")
    if args.out or not args.json:  # --json alone prints the document and writes nothing
        results.save(out, report=args.report, boards=args.boards, overwrite=args.overwrite)
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(printable_lines(results.table(boards=args.boards, wide=args.wide)))
    from gmbench.core.progress import slowest

    prov = doc.get("provenance", {})
    if prov.get("metric_seconds"):
        print(_wrapped(f"took {prov.get('duration_s', 0):.1f} s; slowest stages: "
                       f"{slowest(prov['metric_seconds'])} (per metric: metric_seconds in "
                       "results.json; shared work is charged to the first metric that needs "
                       "it)"), file=sys.stderr)
    written = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    print(_wrapped(printable(f"wrote {', '.join(written)} to {out}/")), file=sys.stderr)
    return 0


def cmd_datasets(_args: argparse.Namespace) -> int:
    from gmbench.datasets import list_datasets

    specs = list_datasets()
    width = max(len(s.name) for s in specs)
    for spec in specs:
        print(f"{spec.name.ljust(width)}  {spec.description} [{spec.source}]")
    return 0


def cmd_baselines(args: argparse.Namespace) -> int:
    from gmbench.present.baseline_list import cmd_baselines as listing

    print(printable_lines(listing(args.dataset, boards=args.boards)))
    return 0


def cmd_metrics(_args: argparse.Namespace) -> int:
    from gmbench.metrics import METRICS

    width = max(len(k) for k in METRICS)
    for key, metric in METRICS.items():
        needs = " + ".join(metric.needs) or " or ".join(metric.needs_any)
        print(f"{metric.direction.arrow} {key.ljust(width)}  needs {needs:<18} [{metric.unit}] "
              f"{metric.description} (protocol {metric.protocol})")
    return 0


def cmd_leaderboard_add(args: argparse.Namespace) -> int:
    from gmbench.storage.leaderboard import add_results

    summary = add_results(args.board, args.results, replace=args.replace)
    print(printable_lines(summary.describe(args.board)))
    return 0


def cmd_leaderboard_show(args: argparse.Namespace) -> int:
    from gmbench.present.board import render_board
    from gmbench.present.format import WIDTH
    from gmbench.storage.leaderboard import read_board

    pareto = None
    if args.pareto:
        pair = metric_list(args.pareto)
        if len(pair) != 2:
            raise GmbenchError(f"--pareto {args.pareto!r} must name two metrics, e.g. "
                               "--pareto precision,recall.")
        pareto = (pair[0], pair[1])
    print(printable_lines(render_board(read_board(args.board), sort=args.sort, pareto=pareto,
                                       width=None if args.wide else WIDTH)))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from gmbench.present.verdicts import summary_line, verdict_line
    from gmbench.run.results import Results

    result, problem = Results.read(args.results)
    report = result.check(args.against, model=args.model, tolerances=args.tolerance,
                          alpha=args.alpha, metrics=args.metrics, allow=args.allow)
    try:
        for warning in ([problem] if problem else []) + list(report.warnings):
            print(printable(f"warning: {warning}"))
        for verdict in report.verdicts:
            print(printable(verdict_line(verdict)))
        print(printable(summary_line(report, results=args.results, model=args.model,
                                     board=args.against)))
    except BrokenPipeError:  # `gmbench check ... | head`: the verdict still decides the status
        _silence_stdout()
    return report.exit_code


def cmd_sweep(args: argparse.Namespace) -> int:
    from gmbench.run.request import given
    from gmbench.run.sweeps import sweep

    report = sweep(args.models, args.datasets, args.seeds, board=args.board, out=args.out,
                   runner="serial" if args.serial else "auto", cpus_per_eval=args.cpus_per_eval,
                   gpus_per_eval=args.gpus_per_eval, retries=args.retries, rerun=args.rerun,
                   progress=not args.quiet, **given(args, "sweep"))
    print(printable_lines(report.describe()))
    return report.exit_code


class Parser(argparse.ArgumentParser):
    """argparse with gmbench's error line: ``gmbench: error: ...`` and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"gmbench: error: {printable(message)} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="gmbench", description="Evaluate generative models with uncertainty and provenance.")
    from gmbench.version import __version__
    parser.add_argument("--version", action="version", version=f"gmbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    from gmbench.run.request import add_options

    ev = sub.add_parser("evaluate", help="evaluate a model file, or stored samples, on a dataset")
    ev.add_argument("model", help="path to model.py (defines load(dataset, device) or model), "
                                  "or stored samples: a .npz, a .npy or a folder of .png images")
    ev.add_argument("--out", help="output directory (default gmbench-out/<model>-<dataset>)")
    add_options(ev, "evaluate")
    ev.add_argument("--report", action="store_true",
                    help="also write report.html (self-contained: tables, pictures, plots)")
    ev.add_argument("--boards", default=None,
                    help="directory of baseline boards <dataset>.csv (default: $GMBENCH_BOARDS, "
                         "else leaderboards/ of the gmbench source checkout)")
    ev.add_argument("--json", action="store_true",
                    help="print the results document (results.json) on stdout and nothing "
                         "else there; files are written only with --out")
    ev.add_argument("--overwrite", action="store_true",
                    help="replace an output folder even when it holds a run with metrics "
                         "this run does not compute (default: refused, before evaluating)")
    ev.add_argument("--quiet", action="store_true", help="no progress bars")
    ev.add_argument("--wide", action="store_true",
                    help="show every baseline in its own column (default: the best one)")
    ev.set_defaults(func=cmd_evaluate)

    board = sub.add_parser("leaderboard", help="add results to a leaderboard CSV, or show one")
    board_sub = board.add_subparsers(dest="board_command", required=True)
    add = board_sub.add_parser(
        "add", help="add every metric of results.json files as rows of a board",
        description="Append one row per metric, with provenance, to a long-format CSV board "
                    "(created if absent). Rows are identified by model sha256 + dataset sha256 "
                    "+ metric + seed + feature space: re-adding leaves the board unchanged. "
                    "Writes are atomic and locked (<board>.lock), so concurrent adds are safe.")
    add.add_argument("results", nargs="+", help="results.json files from `gmbench evaluate`")
    add.add_argument("--board", required=True, help="the board, e.g. leaderboards/digits.csv")
    add.add_argument("--replace", action="store_true",
                     help="overwrite rows with the same identity whose values differ")
    add.set_defaults(func=cmd_leaderboard_add)
    show = board_sub.add_parser("show", help="print a board as a table: a line per run of a "
                                "model (seed, sample count), a column per metric")
    show.add_argument("--board", required=True, help="the board CSV")
    show.add_argument("--sort", help="a metric: order models best first in its direction")
    show.add_argument("--pareto", help="two metrics M1,M2: mark the models on their Pareto front")
    show.add_argument("--wide", action="store_true",
                      help="every metric in one table, however wide (default: groups of "
                           "columns that fit 120 characters)")
    show.set_defaults(func=cmd_leaderboard_show)

    from gmbench.gate.check import RULE
    chk = sub.add_parser(
        "check", help="fail (exit 1) when results regress against a model's row on a board",
        description=f"Compare RESULTS.json with the model's reference rows on the board (the "
                    f"per-example values beside both are used where kept). Rule: {RULE}. Exit "
                    "0: no regression; 1: a regression, a missing metric or a run that does "
                    "not reproduce; 2: bad input (unreadable or corrupt file, unknown model, a "
                    "reference that is not comparable).")
    chk.add_argument("results", help="results.json of the new evaluation")
    chk.add_argument("--against", required=True, help="the reference board CSV")
    chk.add_argument("--model", required=True, help="the model's name on the board")
    chk.add_argument("--alpha", type=float, default=0.05,
                     help="family-wise false-alarm rate of the whole check (Holm's procedure "
                          "over the metrics; default 0.05)")
    chk.add_argument("--allow", action="append", default=[], metavar="DIFFERENCE",
                     help="compare across a documented difference: 'dataset' (data with "
                          "another sha256 under the same name) or 'n-samples' (sample metrics "
                          "at another sample count); repeatable or comma-separated")
    chk.add_argument("--tolerance", action="append", default=[], metavar="KEY=VALUE",
                     help="accepted worsening per metric: absolute in the metric's unit "
                          "(fid=2.5), or relative to the reference (precision=5%%); '*=VALUE' "
                          "sets every metric's default (0); repeatable")
    chk.add_argument("--metrics", type=metric_list, default=None,
                     help="comma-separated metrics to gate (default: every metric "
                                       "in the results or on the board; a gated metric the "
                                       "results lack fails the check)")
    chk.set_defaults(func=cmd_check)

    sw = sub.add_parser(
        "sweep", help="evaluate many model files x datasets x seeds onto one board (on Ray)",
        description="Evaluate every (model, dataset, seed) and add each result's rows to the "
                    "board as it finishes. With Ray installed (pip install \"gmbench[ray]\") "
                    "each evaluation is a Ray task on this machine or, with --address, on a "
                    "cluster; without it they run one at a time in this process. Re-running "
                    "the same sweep skips finished evaluations and retries failed ones. Exit "
                    "0: all finished; 1: some failed (listed); 2: bad input.")
    sw.add_argument("models", nargs="+", metavar="MODEL", help="model files")
    sw.add_argument("--datasets", required=True, help="comma-separated dataset names")
    sw.add_argument("--seeds", default="0", help="seeds: 0-4, 0,3,7 or 0-2,10 (default 0)")
    sw.add_argument("--board", required=True, help="the board CSV the rows are added to")
    sw.add_argument("--out", default="gmbench-sweep",
                    help="folder of the runs and sweep.json (default gmbench-sweep)")
    add_options(sw, "sweep")
    sw.add_argument("--cpus-per-eval", type=float, default=1.0,
                    help="CPUs per evaluation (its torch threads; default 1)")
    sw.add_argument("--gpus-per-eval", type=float, default=0.0,
                    help="GPUs per evaluation (fractions share a GPU; default 0)")
    sw.add_argument("--shards", type=int, dest="workers", default=argparse.SUPPRESS,
                    help="the same as --workers (its name in gmbench 0.2)")
    sw.add_argument("--retries", type=int, default=2,
                    help="retries of an evaluation whose worker died (default 2)")
    sw.add_argument("--rerun", action="store_true",
                    help="evaluate again what an earlier run of the sweep finished")
    sw.add_argument("--serial", action="store_true",
                    help="one evaluation at a time in this process, even with Ray installed")
    sw.add_argument("--quiet", action="store_true", help="no line per finished evaluation")
    sw.set_defaults(func=cmd_sweep)

    sub.add_parser("datasets", help="list datasets").set_defaults(func=cmd_datasets)
    sub.add_parser("metrics", help="list metrics and what each needs").set_defaults(
        func=cmd_metrics)
    bl = sub.add_parser("baselines", help="list bundled baselines and their recorded results")
    bl.add_argument("--dataset", default=None, help="one dataset (default: every dataset)")
    bl.add_argument("--boards", default=None, help="directory of boards <dataset>.csv")
    bl.set_defaults(func=cmd_baselines)
    return parser


def _check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    from gmbench.run.request import COMMANDS, OptionError, RunRequest, given

    try:
        if args.command in COMMANDS:
            RunRequest(**given(args, args.command)).check(cli=True)
        elif getattr(args, "metrics", None) is not None:  # gmbench check --metrics
            RunRequest(metrics=args.metrics).check(cli=True)
    except OptionError as exc:
        parser.error(str(exc).rstrip("."))
    for name in ("board", "against", "out", "boards", "results"):
        value = getattr(args, name, None)
        if isinstance(value, str) and not value.strip():
            parser.error(f"--{name.replace('_', '-')} is empty; pass a path")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        _check_arguments(parser, args)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return int(args.func(args))
    except GmbenchError as exc:
        print(f"gmbench: error: {printable(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("gmbench: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `gmbench ... | head`: the reader left; say nothing more
        _silence_stdout()
        return 0


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's final flush of a closed pipe
    raises nothing."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout already closed
        pass


def entry() -> NoReturn:
    """The ``gmbench`` executable: :func:`main`, then exit without waiting for threads that
    model code left running (a non-daemon thread would otherwise keep the process alive after
    the results are written)."""
    code = main()
    import atexit
    import threading

    from gmbench.models.boundary import ModelExit, exits_refused

    # Exit handlers registered by model code run now, where `os._exit` cannot replace the
    # exit status (an `atexit.register(lambda: os._exit(0))` would turn a failure into 0).
    # The interpreter would run them after this function; run here, they are not run twice.
    def report(hook: Any) -> None:
        what = (f"called os._exit({hook.exc_value.status})"
                if isinstance(hook.exc_value, ModelExit) else
                f"raised {type(hook.exc_value).__name__}")
        with contextlib.suppress(Exception):
            print(f"gmbench: warning: an exit handler ({printable(repr(hook.object))}) "
                  f"{what}; ignored", file=sys.stderr)

    unraisable = sys.unraisablehook
    sys.unraisablehook = report
    try:
        with exits_refused(), contextlib.suppress(ModelExit, SystemExit):
            atexit._run_exitfuncs()
    finally:
        sys.unraisablehook = unraisable

    stray = [t for t in threading.enumerate()
             if t is not threading.main_thread() and t.is_alive() and not t.daemon]
    if not stray:
        sys.exit(code)
    names = ", ".join(printable(t.name) for t in stray[:3])
    with contextlib.suppress(Exception):
        print(f"gmbench: warning: model code left {len(stray)} thread(s) running ({names}); "
              "exiting without waiting for them", file=sys.stderr)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
