"""The project's own regression gate: re-evaluate the bundled baselines of one dataset and run
``gmbench check`` for each against its recorded rows on ``leaderboards/<dataset>.csv``.

Each model on the board is re-evaluated from ``baselines/<model>.py`` with the seed, sample
count and evaluation options recorded in its most recent rows (columns ``seed``, ``n_samples``,
``eval_config``), on the metrics recorded for it, on one torch and BLAS thread as the boards
are recorded, and checked with the rule of ``gmbench check``. On the platform that recorded
the board (the ``platform`` column: machine, libraries, thread count) the run must reproduce
every number, so any change of a baseline's numbers, better or worse, fails as "not
reproduced" until the board is re-recorded; elsewhere the statistical rule applies. Exit 0: no
regression; 1: a regression or a number not reproduced; 2: bad input (no board, no baseline
file for a model on the board, an evaluation that failed, a reference that is not comparable).

Usage (from the repository root): ``python .ci/regression_gate.py [--dataset digits]
[--metrics k1,k2] [--tolerance KEY=VALUE ...] [--only MODEL ...] [--baselines DIR]
[--jobs 2]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gmbench.errors import GmbenchError  # noqa: E402
from gmbench.storage.leaderboard import latest_rows, read_board  # noqa: E402

GMBENCH = [sys.executable, "-m", "gmbench.cli"]
# the boards are recorded on one thread: so is their reproduction
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "OPENBLAS_NUM_THREADS": "1"}
NAME = re.compile(r"^NAME\s*=\s*['\"](.+?)['\"]", re.MULTILINE)


def baseline_files(folder: Path) -> dict[str, Path]:
    """Model name -> file: the module's ``NAME`` constant, else its file stem."""
    files = {}
    for path in sorted(folder.glob("*.py")):
        if path.name.startswith("_"):
            continue
        match = NAME.search(path.read_text())
        files[match.group(1) if match else path.stem] = path
    return files


def evaluate_args(rows: list, dataset: str, metrics: list[str] | None = None) -> list[str]:
    """``gmbench evaluate`` options that reproduce the model's most recent recorded run (on
    its recorded metrics, or those of them in ``metrics``)."""
    latest = max(rows, key=lambda r: (r.date, -r.seed))
    run = [r for r in rows if r.date == latest.date and r.seed == latest.seed]
    recorded = sorted({r.metric for r in run if metrics is None or r.metric in metrics})
    args = ["--dataset", dataset, "--seed", str(latest.seed), "--metrics", ",".join(recorded)]
    if latest.n_samples is not None:
        args += ["--n-samples", str(latest.n_samples)]
    config = json.loads(latest.eval_config) if latest.eval_config else {}
    for key in ("dequant_samples", "max_train", "feature_extractor", "batch_size"):
        if config.get(key) is not None:
            args += [f"--{key.replace('_', '-')}", str(config[key])]
    return args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--board", help="default: leaderboards/<dataset>.csv")
    parser.add_argument("--baselines", default=str(ROOT / "baselines"))
    parser.add_argument("--tolerance", action="append", default=[])
    parser.add_argument("--only", action="append", default=[], help="gate only these models")
    parser.add_argument("--metrics", help="comma-separated: gate only these of the recorded "
                                          "metrics (default: all; fewer is faster)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--jobs", type=int, default=2,
                        help="evaluations at once, one thread each (default 2)")
    args = parser.parse_args(argv)
    board = Path(args.board or ROOT / "leaderboards" / f"{args.dataset}.csv")
    try:
        rows = [r for r in read_board(board) if r.dataset == args.dataset]
    except GmbenchError as exc:
        print(f"gate: error: {exc}", file=sys.stderr)
        return 2
    models = sorted({k[1] for k in latest_rows(rows)})
    if args.only:
        models = [m for m in models if m in args.only]
    files = baseline_files(Path(args.baselines))
    wanted = args.metrics.split(",") if args.metrics else None
    with tempfile.TemporaryDirectory(prefix="gmbench-gate-") as tmp:
        def gate(model: str) -> tuple[str, str, int, str]:
            """One model: its evaluation and check; (model, status, exit code, output)."""
            path = files.get(model)
            if path is None:
                return (model, "no model file", 2, f"gate: error: '{model}' is on {board} but "
                        f"no {args.baselines}/{model}.py defines it\n")
            out = Path(tmp) / model
            mine = [r for r in rows if r.model == model]
            if wanted and not {r.metric for r in mine} & set(wanted):
                return model, "none of --metrics recorded", 0, ""
            cmd = [*GMBENCH, "evaluate", str(path), *evaluate_args(mine, args.dataset, wanted),
                   "--device", args.device, "--out", str(out), "--boards", str(board.parent)]
            log = f"$ {' '.join(cmd[2:])}\n"
            run = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                 text=True, check=False, env=ONE_THREAD)
            if run.returncode != 0:
                return model, "evaluation failed", 2, log + run.stderr[-2000:]
            check = [*GMBENCH, "check", str(out / "results.json"), "--against", str(board),
                     "--model", model, *[f"--tolerance={t}" for t in args.tolerance]]
            if wanted:
                recorded = sorted({r.metric for r in mine} & set(wanted))
                check += ["--metrics", ",".join(recorded)]
            log += f"$ {' '.join(check[2:])}\n"
            res = subprocess.run(check, capture_output=True, text=True, check=False)
            code = res.returncode if res.returncode in (0, 1) else 2
            return (model, {0: "ok", 1: "REGRESSION"}.get(code, "bad input"), code,
                    log + res.stdout + res.stderr)

        # one thread each, as many at once as --jobs: the evaluations are independent
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            done = list(pool.map(gate, models))
    worst, summary = 0, []
    for model, status, code, log in done:
        print(log, end="", flush=True)
        summary.append((model, status))
        worst = max(worst, code)
    print(f"gate {args.dataset}: " + ", ".join(f"{m} {s}" for m, s in summary))
    return worst


if __name__ == "__main__":
    sys.exit(main())
