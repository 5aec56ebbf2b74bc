"""A sweep of the nine digits baselines x 2 seeds: serial in one process against Ray on this
machine, same run.

Run: ``python -m pytest benchmarks/bench_sweep.py --benchmark-enable -q -s`` (needs the
``ray`` extra). Each side starts with an empty output folder and board and the same warm
feature cache (one untimed serial run of one evaluation first); Ray runs one evaluation per
CPU (``--cpus-per-eval 1``; its start-up is inside the timed part). Reported: wall seconds
of each side, their ratio (Ray / serial), and the per-evaluation seconds of the serial side
(what the estimate of larger sweeps in docs/sweeps.md is built from).
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import pytest

import gmbench

ROOT = Path(__file__).resolve().parents[1]
MODELS = [ROOT / "baselines" / f"{m}.py" for m in (
    "ae", "ae_conditional", "categorical", "flow", "gan", "memorizer", "ppca", "vae",
    "vae_elbo")]
SEEDS = "0-1"


def _timed(runner: str, tmp: Path) -> tuple[float, gmbench.run.sweeps.SweepReport]:
    tic = time.perf_counter()
    report = gmbench.sweep(MODELS, "digits", SEEDS, board=tmp / f"{runner}.csv",
                           out=tmp / runner, runner=runner, progress=False,
                           cpus_per_eval=1)
    return time.perf_counter() - tic, report


@pytest.mark.benchmark(group="sweep")
def test_digits_sweep_serial_against_ray(benchmark, tmp_path):
    pytest.importorskip("ray", reason='needs Ray: pip install "gmbench[ray]"')
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    gmbench.evaluate(str(MODELS[6]), dataset="digits", progress=False)  # warm the caches

    def both() -> dict:
        serial_s, serial = _timed("serial", tmp_path)
        ray_s, on_ray = _timed("ray", tmp_path)
        return {"serial": (serial_s, serial), "ray": (ray_s, on_ray)}

    res = benchmark.pedantic(both, rounds=1, iterations=1)
    (serial_s, serial), (ray_s, on_ray) = res["serial"], res["ray"]
    assert serial.exit_code == 0 and on_ray.exit_code == 0
    per_eval = [o.seconds for o in serial.outcomes]
    benchmark.extra_info.update({
        "evaluations": len(per_eval), "serial_s": round(serial_s, 1), "ray_s": round(ray_s, 1),
        "ratio": round(ray_s / serial_s, 3), "serial_per_eval_median_s":
            round(statistics.median(per_eval), 2), "serial_per_eval_max_s": round(max(per_eval),
                                                                                  2)})
    print(f"\n{len(per_eval)} evaluations: serial {serial_s:.1f} s, Ray (2 CPUs, 1 per "
          f"evaluation) {ray_s:.1f} s: ratio {ray_s / serial_s:.2f}; serial per evaluation: "
          f"median {statistics.median(per_eval):.1f} s, max {max(per_eval):.1f} s")
