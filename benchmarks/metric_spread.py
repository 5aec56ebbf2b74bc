"""How much does a metric move between runs of one model, against the standard error it
reports? The standard deviation of its value over runs at fresh seeds (the test split fixed,
as every run on a board has it) beside the mean of the standard error between runs that each
run reports (``stderr_runs`` where the record has one, else ``stderr``).

    python benchmarks/metric_spread.py [--model examples/minimal_model.py] [--dataset digits]
        [--metrics fid] [--runs 40]

Prints one line per metric and writes ``benchmarks/results/metric_spread.json``. A ratio near 1
says the intervals are as wide as what changes between runs; the standard deviation's own
relative sampling error is about ``1 / sqrt(2 (runs - 1))`` (11% at 40 runs).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "metric_spread.json"
FIRST_SEED = 100  # seeds no board holds


def main(argv: list[str] | None = None) -> int:
    import gmbench

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="examples/minimal_model.py")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--metrics", default="fid")
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args(argv)
    keys = [k.strip() for k in args.metrics.split(",") if k.strip()]
    started = time.time()
    values: dict[str, list[float]] = {k: [] for k in keys}
    errors: dict[str, list[float]] = {k: [] for k in keys}
    for seed in range(FIRST_SEED, FIRST_SEED + args.runs):
        res = gmbench.evaluate(ROOT / args.model, dataset=args.dataset, metrics=keys, seed=seed,
                               threads=1, progress=False)
        for k in keys:
            rec = res[k]
            values[k].append(float(rec.value))
            errors[k].append(float(rec.detail("stderr_runs", rec.stderr)))
    figures: dict[str, object] = {
        "command": "python benchmarks/metric_spread.py " + " ".join(argv or sys.argv[1:]),
        "model": args.model, "dataset": args.dataset, "runs": args.runs,
        "seeds": f"{FIRST_SEED}-{FIRST_SEED + args.runs - 1}"}
    for k in keys:
        sd, se = float(np.std(values[k], ddof=1)), float(np.mean(errors[k]))
        figures[k] = {"sd_between_runs": sd, "mean_stderr": se, "ratio": se / sd,
                      "sd_relative_error": 1 / math.sqrt(2 * (args.runs - 1))}
        print(f"{k}: values' sd over {args.runs} runs {sd:.4g}, mean standard error {se:.4g}, "
              f"ratio {se / sd:.2f}", flush=True)
    figures["seconds"] = round(time.time() - started)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    print(f"wrote {OUT} in {figures['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
