"""Is the regression gate's samples test (a permutation test of the samples' distribution)
calibrated on unchanged models? Pairs of fresh runs of one digits baseline, each pair judged
exactly as ``gmbench check`` judges a run against its reference run.

    python benchmarks/samples_test_null.py [--models ppca,vae] [--pairs 150]

For each pair, ``gmbench.evaluate`` runs the model at two fresh seeds (``mmd`` only: it computes
the samples' features that the per-example file keeps, float16 as stored) and the gate's
:func:`gmbench.gate.check._samples_test` gives a p-value. For an unchanged model they are
uniform: about 5% of them at or below 0.05 and 1% at or below 0.01. Prints the counts with
exact 95% intervals.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    import numpy as np
    import torch
    from threadpoolctl import threadpool_limits

    import gmbench
    from gmbench.estimators.uncertainty import clopper_pearson
    from gmbench.gate.check import _samples_test

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="ppca,vae")
    parser.add_argument("--pairs", type=int, default=150, help="pairs of runs per model")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started = time.time()
    every = []
    with threadpool_limits(1):
        for model in args.models.split(","):
            p = []
            for i in range(args.pairs):
                runs = [gmbench.evaluate(ROOT / "baselines" / f"{model}.py", dataset="digits",
                                         seed=seed, metrics=["mmd"], progress=False,
                                         n_samples=2000)
                        for seed in (20001 + 2 * i, 20002 + 2 * i)]
                verdict, _ = _samples_test(runs[0].per_example, runs[1].per_example,
                                           seed=20001 + 2 * i)
                assert verdict is not None and verdict.p_value is not None
                p.append(verdict.p_value)
            every += p
            print(f"{model}: {sum(x <= 0.05 for x in p)}/{len(p)} at p <= 0.05, "
                  f"{sum(x <= 0.01 for x in p)}/{len(p)} at p <= 0.01", flush=True)
    p_all = np.array(every)
    for level in (0.05, 0.01):
        k = int((p_all <= level).sum())
        low, high = clopper_pearson(k, len(p_all))
        print(f"all: {k}/{len(p_all)} at p <= {level:g} (rate {k / len(p_all):.3f}, exact 95% "
              f"interval [{low:.3f}, {high:.3f}])")
    print(f"{time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
