"""The project's own regression gate: re-evaluate the bundled baselines of one dataset and run
``gmbench check`` for each against its recorded rows on ``leaderboards/<dataset>.csv``.

Each model on the board is re-evaluated from ``baselines/<model>.py`` with the seed, sample
count and evaluation options recorded in its most recent rows (columns ``seed``, ``n_samples``,
``eval_config``), on the metrics recorded for it, and checked with the rule of ``gmbench
check``. Exit 0: no regression; 1: a regression; 2: bad input (no board, no baseline file for
a model on the board, an evaluation that failed).

Usage (from the repository root): ``python .ci/regression_gate.py [--dataset digits]
[--metrics k1,k2] [--tolerance KEY=VALUE ...] [--only MODEL ...]``.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gmbench.errors import GmbenchError  # noqa: E402
from gmbench.storage.leaderboard import latest_rows, read_board  # noqa: E402

GMBENCH = [sys.executable, "-m", "gmbench.cli"]
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
    for key in ("dequant_samples", "max_train", "feature_extractor"):
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
    worst, summary = 0, []
    with tempfile.TemporaryDirectory(prefix="gmbench-gate-") as tmp:
        for model in models:
            path = files.get(model)
            if path is None:
                print(f"gate: error: '{model}' is on {board} but no {args.baselines}/{model}.py "
                      "defines it", file=sys.stderr)
                worst = 2
                summary.append((model, "no model file"))
                continue
            out = Path(tmp) / model
            mine = [r for r in rows if r.model == model]
            wanted = args.metrics.split(",") if args.metrics else None
            if wanted and not {r.metric for r in mine} & set(wanted):
                summary.append((model, "none of --metrics recorded"))
                continue
            cmd = [*GMBENCH, "evaluate", str(path), *evaluate_args(mine, args.dataset, wanted),
                "--device", args.device, "--out", str(out), "--boards", str(board.parent)]
            print("$", " ".join(cmd[2:]), flush=True)
            if subprocess.run(cmd, stdout=subprocess.DEVNULL, check=False).returncode != 0:
                worst = 2
                summary.append((model, "evaluation failed"))
                continue
            check = [*GMBENCH, "check", str(out / "results.json"), "--against", str(board),
                     "--model", model, *[f"--tolerance={t}" for t in args.tolerance]]
            print("$", " ".join(check[2:]), flush=True)
            code = subprocess.run(check, check=False).returncode
            summary.append((model, {0: "ok", 1: "REGRESSION"}.get(code, "bad input")))
            worst = max(worst, code if code in (0, 1) else 2)
    print(f"gate {args.dataset}: " + ", ".join(f"{m} {s}" for m, s in summary))
    return worst


if __name__ == "__main__":
    sys.exit(main())
