"""Are FID's and KID's standard errors between runs good enough for the regression gate's
strict per-test level? Standardised differences of two runs of one unchanged model, in
128-dimensional and 2048-dimensional stand-in features.

    python benchmarks/null_differences.py [--runs 200] [--dims 128,2048] [--resume]

The "test split" is 2,000 fixed draws of ``N(0, S)`` with a power-law spectrum (eigenvalues
``i^-1``, rotated), and the "model" draws 2,000 features of ``N(0.05, 1.1 S)`` per run (a small
FID, as a good model has). For each of ``--runs`` pairs of fresh runs the gate's one-sided
t-test of "not worse" (standard errors between runs: FID's by the delta method, KID's from its
U-statistic) gives a p-value; for an unchanged model they are uniform, so
each tail frequency must match its level. InceptionV3's 2,048-d features cannot be obtained
here; the stand-in has their dimension and a decaying spectrum. Prints a table and writes
``benchmarks/results/null_differences.json``.

A 2048-d run takes about 40-60 s on one CPU thread (400 of them: hours), so with ``--resume``
every finished run is appended to ``benchmarks/results/null_differences_runs.jsonl`` (its
dimension, seed, values and machine) and a later invocation runs only the seeds still
missing; the table is written once every run of a dimension is there. Runs are seeded by
their index, so runs made on different days or machines belong to the same experiment.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "results" / "null_differences.json"
RUNS = ROOT / "benchmarks" / "results" / "null_differences_runs.jsonl"
N = 2000
LEVELS = (0.05, 0.01, 0.0025)


def _gaussian(dim: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(dim)
    rotation, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    scale = rotation * np.sqrt(1.0 / np.arange(1, dim + 1))  # (dim, dim): S = scale scale'
    return rotation, scale


FID_SE = "delta"  # how the FID standard errors in RUNS were computed (earlier: "bootstrap")


def one_run(dim: int, seed: int, fid_only: bool = False) -> dict[str, float]:
    """FID and KID (``fid_only``: FID) of one fresh model run against the fixed test split,
    with the standard errors (and degrees of freedom) the gate uses."""
    import torch
    from threadpoolctl import threadpool_limits

    from gmbench.estimators.frechet import frechet_delta_se, frechet_distance, gaussian_statistics
    from gmbench.estimators.image_quality import kid_estimate

    torch.set_num_threads(1)
    _, scale = _gaussian(dim)
    real = (np.random.default_rng(0).normal(size=(N, dim)) @ scale.T).astype(np.float32)
    rng = np.random.default_rng(1000 + seed)
    fake = (0.05 + math.sqrt(1.1) * rng.normal(size=(N, dim)) @ scale.T).astype(np.float32)
    with threadpool_limits(1):
        # the value by gmbench's eigenvalue form (torch-fidelity's matrix square root agrees to
        # 1e-6 and is slower); the standard error exactly as `gmbench evaluate` computes it
        real_stats = gaussian_statistics(real)
        fid = frechet_distance(*gaussian_statistics(fake), *real_stats)
        out = {"fid": fid, "fid_se": frechet_delta_se(fake, *real_stats), "fid_df": math.inf}
        if not fid_only:
            kid, kid_se = kid_estimate(fake, real, seed=seed)
            out.update(kid=kid.value, kid_se=kid_se, kid_df=math.inf)
    return out


def tails(runs: list[dict[str, float]], metric: str) -> dict[str, object]:
    from scipy import stats

    from gmbench.estimators.hypothesis import one_sided_p, welch_df
    from gmbench.estimators.uncertainty import clopper_pearson

    p, z2 = [], []
    for a, b in zip(runs[::2], runs[1::2], strict=True):
        se_a, se_b = a[f"{metric}_se"], b[f"{metric}_se"]
        df = welch_df(se_a, a[f"{metric}_df"], se_b, b[f"{metric}_df"])
        p.append(one_sided_p(a[metric] - b[metric], math.hypot(se_a, se_b), df))
        z2.append(stats.norm.isf(min(max(p[-1], 1e-300), 1 - 1e-16)) ** 2)
    out: dict[str, object] = {"pairs": len(p), "mean_z2": float(np.mean(z2))}
    for level in LEVELS:
        k = int(sum(x <= level for x in p))
        out[f"p<={level:g}"] = [k, list(clopper_pearson(k, len(p)))]
    return out


def _resumed(dim: int, count: int, workers: int) -> list[dict[str, float]] | None:
    """Runs ``0 .. count-1`` of ``dim``: those in :data:`RUNS`, the missing ones run now and
    appended as each finishes; ``None`` when interrupted before all are there."""
    from concurrent.futures import as_completed

    from gmbench.core.device import platform_id

    done: dict[int, dict[str, float]] = {}
    stale: dict[int, dict[str, float]] = {}  # an earlier FID standard error: only FID again
    if RUNS.is_file():
        for line in RUNS.read_text().splitlines():  # a later line of a run supersedes it
            rec = json.loads(line)
            if rec["dim"] == dim and rec["seed"] < count:
                fresh = rec.get("fid_se_method") == FID_SE
                (done if fresh else stale)[rec["seed"]] = rec["values"]
                (stale if fresh else done).pop(rec["seed"], None)
    missing = [s for s in range(count) if s not in done and s not in stale]
    print(f"{dim}-d: {len(done)} of {count} runs kept, {len(stale)} to update (FID's standard "
          f"error), {len(missing)} to run", flush=True)
    machine = platform_id("cpu")[0]
    RUNS.parent.mkdir(parents=True, exist_ok=True)
    try:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(one_run, dim, s, s in stale): s for s in [*stale, *missing]}
            for future in as_completed(futures):
                seed = futures[future]
                done[seed] = {**stale.get(seed, {}), **future.result()}
                with RUNS.open("a") as fh:  # one line per finished run
                    fh.write(json.dumps({"dim": dim, "seed": seed, "values": done[seed],
                                         "fid_se_method": FID_SE, "cpu": machine["cpu"]})
                             + "\n")
    except KeyboardInterrupt:
        print(f"{dim}-d: interrupted with {len(done)} of {count} runs kept", flush=True)
        return None
    return [done[s] for s in range(count)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200, help="pairs of runs per dimension")
    parser.add_argument("--dims", default="128,2048")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--resume", action="store_true",
                        help=f"keep every run in {RUNS.relative_to(ROOT)} and run only the "
                             "missing ones")
    args = parser.parse_args(argv)
    started = time.time()
    figures: dict[str, object] = {"command": "python benchmarks/null_differences.py "
                                  + " ".join(argv or sys.argv[1:]),
                                  "n_samples": N, "n_test": N}
    for dim in (int(d) for d in args.dims.split(",")):
        if args.resume:
            runs = _resumed(dim, 2 * args.runs, args.workers)
            if runs is None:
                return 0
        else:
            with ProcessPoolExecutor(max_workers=args.workers) as pool:
                runs = list(pool.map(one_run, [dim] * (2 * args.runs), range(2 * args.runs)))
        figures[str(dim)] = {m: tails(runs, m) for m in ("fid", "kid")}
        for metric, row in figures[str(dim)].items():  # type: ignore[union-attr]
            shown = ", ".join(f"{k} {v[0]}/{row['pairs']}" for k, v in row.items()
                              if k.startswith("p<="))
            print(f"{dim:>5}-d {metric}: mean z^2 {row['mean_z2']:.2f}; {shown}", flush=True)
    figures["seconds"] = round(time.time() - started)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    print(f"wrote {OUT} in {figures['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
