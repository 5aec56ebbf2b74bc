"""The default Fashion-MNIST evaluation against version 0.1, side by side in one run.

Run: ``python -m pytest benchmarks/bench_evaluation.py --benchmark-enable -q -s``

Each case runs ``gmbench evaluate baselines/ppca.py --dataset fashion-mnist --n-samples N``
(every applicable metric: 22 of them here, 21 in 0.1) from this checkout and from version 0.1
(commit 8879c7b, extracted with ``git archive`` into a temporary folder), each in its own
subprocess with its own feature cache (``XDG_CACHE_HOME``), alternating which goes first:

- **warm**: the cache holds what an earlier run on this machine computed (one untimed run
  first); the case users pay after every checkpoint;
- **cold**: an empty cache (features of the 70,000 real images, model-independent neighbour
  searches, reference classifiers: everything computed).

Reported per case (``extra_info`` and printed): wall time of the whole command (imports
included) and peak resident memory of each version, their ratio, and the current version's
per-metric seconds from ``results.json``. ``GMBENCH_BENCH_SIZES`` (default ``10000``) picks
the sample counts of the warm cases, e.g. ``1000,10000,50000`` for the scaling table of docs/performance.md;
``GMBENCH_BENCH_ROUNDS`` (default 2) the alternating rounds (each version's best is kept).
``GMBENCH_BENCH_REF`` compares with another commit instead of 0.1 and
``GMBENCH_BENCH_MODEL`` evaluates another model file (one both checkouts can load, e.g.
``examples/minimal_model.py`` across a change of the package's layout).
Skipped without Fashion-MNIST, without git history holding 8879c7b, or with
``GMBENCH_BENCH_SIZES`` empty.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from gmbench.datasets import DatasetError, get_dataset

ROOT = Path(__file__).resolve().parents[1]
V01 = os.environ.get("GMBENCH_BENCH_REF", "8879c7b")  # another commit to compare with
MODEL = os.environ.get("GMBENCH_BENCH_MODEL", "baselines/ppca.py")  # as the commit has it
LABEL = "v0.1" if V01 == "8879c7b" else V01
SIZES = [int(s) for s in os.environ.get("GMBENCH_BENCH_SIZES", "10000").split(",") if s]
ROUNDS = int(os.environ.get("GMBENCH_BENCH_ROUNDS", "2"))

CHILD = textwrap.dedent("""
    import json, resource, sys, time
    tic = time.perf_counter()
    sys.path.insert(0, {tree!r})
    from gmbench.cli import main
    code = main({argv!r})
    seconds = time.perf_counter() - tic
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with open({report!r}, "w") as fh:
        json.dump({{"code": code, "seconds": seconds, "peak_mb": peak_mb}}, fh)
""")


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> dict[str, Path]:
    try:
        get_dataset("fashion-mnist")
    except DatasetError as exc:
        pytest.skip(f"needs Fashion-MNIST: {exc}")
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", V01], capture_output=True)
    if archive.returncode != 0:
        pytest.skip(f"needs the git history holding {V01} (version 0.1): "
                    f"{archive.stderr.decode().strip()}")
    old = tmp_path_factory.mktemp("v0.1")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(old, filter="data")
    return {"v0.1": old, "current": ROOT}


def run_once(tree: Path, cache: Path, n: int, out: Path) -> dict:
    """One evaluation in a fresh interpreter: wall seconds, peak memory (MB), exit code."""
    report = out / "report.json"
    argv = ["evaluate", str(tree / MODEL), "--dataset", "fashion-mnist", "--n-samples", str(n),
            "--out", str(out / "run")]
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "PYTHONPATH": str(tree)}
    code = CHILD.format(tree=str(tree), argv=argv, report=str(report))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, cwd=out)
    assert proc.returncode == 0 and report.is_file(), proc.stderr[-3000:]
    result = json.loads(report.read_text())
    assert result["code"] == 0, proc.stderr[-3000:]
    results = json.loads((out / "run" / "results.json").read_text())
    result["metric_seconds"] = results["provenance"].get("metric_seconds", {})
    return result


def side_by_side(trees: dict[str, Path], tmp: Path, scenario: str, n: int) -> dict:
    best: dict[str, dict] = {}
    for version, tree in trees.items():  # warm caches: one untimed run each
        if scenario == "warm":
            run_once(tree, tmp / f"cache-{version}", n, _fresh(tmp / f"warmup-{version}"))
    for r in range(ROUNDS):
        order = list(trees) if r % 2 == 0 else list(reversed(trees))
        for version in order:
            cache = (tmp / f"cache-{version}" if scenario == "warm"
                     else _fresh(tmp / f"cold-cache-{version}-{r}"))
            res = run_once(trees[version], cache, n, _fresh(tmp / f"{version}-{r}"))
            if version not in best or res["seconds"] < best[version]["seconds"]:
                best[version] = {**res, "peak_mb": max(res["peak_mb"],
                                                       best.get(version, res)["peak_mb"])}
    return best


def _fresh(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=False)
    return path


CASES = [("cold", 10_000)] + [("warm", n) for n in SIZES]


@pytest.mark.benchmark(group="evaluation-vs-v0.1")
@pytest.mark.parametrize(("scenario", "n"), CASES, ids=[f"{s}-{n}" for s, n in CASES])
def test_default_evaluation_against_v01(benchmark, trees, tmp_path, scenario, n):
    if not SIZES:
        pytest.skip("GMBENCH_BENCH_SIZES is empty")
    best = benchmark.pedantic(side_by_side, args=(trees, tmp_path, scenario, n), rounds=1,
                              iterations=1)
    old, new = best["v0.1"], best["current"]
    ratio = new["seconds"] / old["seconds"]
    slowest = sorted(new["metric_seconds"].items(), key=lambda kv: -kv[1])[:6]
    benchmark.extra_info.update({
        "n_samples": n, "scenario": scenario, "rounds": ROUNDS,
        "v0.1_s": round(old["seconds"], 2), "current_s": round(new["seconds"], 2),
        "ratio": round(ratio, 3), "v0.1_peak_mb": round(old["peak_mb"]),
        "current_peak_mb": round(new["peak_mb"]), "current_metric_seconds": dict(slowest)})
    print(f"\n{scenario} n={n}: {LABEL} {old['seconds']:.1f} s ({old['peak_mb']:.0f} MB), current "
          f"{new['seconds']:.1f} s ({new['peak_mb']:.0f} MB): ratio {ratio:.2f}; slowest: "
          + ", ".join(f"{k} {v:.1f} s" for k, v in slowest))
