"""Each stage of a default Fashion-MNIST evaluation beside its floor on this machine.

Run: ``python benchmarks/stage_floors.py RESULTS.json`` with the ``results.json`` of
``gmbench evaluate baselines/ppca.py --dataset fashion-mnist`` (warm: run it twice, use the
second). The floor of a stage is the time of the arithmetic it cannot avoid, measured here
on the same shapes with all threads: the matrix products of its distance matrices
(``torch.mm``), the exponentials of its kernels (``torch.exp`` over as many float32 values)
and the extractor's pass over the samples. Training stages (C2ST, CAS) have no such floor
and are shown without one. Shared work is charged to the first metric that needs it (as in
``results.json``), so the floor is given per stage, for the work that stage carries. The
floors use every thread; the stages that run while the C2ST classifier trains in the
background (``kl_knn`` to ``nn_distance_ratio`` in the default order) have one thread fewer.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

N_TRAIN, N_TEST, D_FEAT, D_PIX = 60_000, 10_000, 128, 784
MULTISCALE = 7  # kernels of mmd_multiscale (MULTISCALE_FACTORS); mmd's is one of them
VARIANCE_POINTS = 1000  # the subsets of the MMD variances (mmd2_conditional_variances)


def best(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    return min(times)


def mm_seconds(n: int, m: int, d: int, dtype=torch.float32) -> float:
    """``(n, d) @ (d, m)`` in blocks of 279 rows x m (the kernel's block), all threads."""
    g = torch.Generator().manual_seed(0)
    if dtype == torch.int8:
        a = torch.randint(-128, 127, (279, d), generator=g, dtype=torch.int8)
        b = torch.randint(-128, 127, (m, d), generator=g, dtype=torch.int8)
        out = torch.empty((279, m), dtype=torch.int32)
        one = best(lambda: torch._int_mm(a, b.T, out=out))
    else:
        rows = min(n, max(32, 2**24 // m))
        a = torch.randn(rows, d, generator=g)
        b = torch.randn(m, d, generator=g)
        out = torch.empty((rows, m))
        one = best(lambda: torch.mm(a, b.T, out=out))
        return one * n / rows
    return one * n / 279


def exp_seconds(count: int) -> float:
    x = -torch.rand(2**24)
    return best(lambda: torch.exp(x)) * count / 2**24


def extraction_seconds(n: int) -> float:
    from gmbench.datasets import get_dataset
    from gmbench.features.classifier import classifier_for

    clf = classifier_for("fashion-mnist")
    x = get_dataset("fashion-mnist").test.x[:n]
    return best(lambda: clf.extract(x), repeat=1)


def main(path: str) -> None:
    doc = json.loads(Path(path).read_text())
    n = int(doc["n_samples"])
    seconds = doc["provenance"]["metric_seconds"]
    sq = mm_seconds(n, n, D_FEAT)
    floors = {
        # samples' feature pass (charged to the first sample metric) + the C2ST's classifier
        "c2st_accuracy": (extraction_seconds(n), "feature pass over the samples (training "
                          "not counted)"),
        "kl_knn": (2 * sq, "samples x samples and samples x test distance products"),
        # mmd and mmd_multiscale in one pass (charged to mmd): the test and sample kernel
        # matrices over their upper half and the cross matrix (2 n^2 entries), 7 distinct
        # exponentials per entry; then each one's variance from subsets of VARIANCE_POINTS
        # (each set's kernel to the other's subset and the subsets' own: 2 n s + 3 s^2
        # entries, 1 and 7 exponentials per entry)
        "mmd": (2 * sq + exp_seconds(2 * MULTISCALE * n * n)
                + exp_seconds((1 + MULTISCALE) * (2 * n * VARIANCE_POINTS
                                                  + 3 * VARIANCE_POINTS**2)),
                f"distance products, {MULTISCALE} exp per entry, the variances' kernels"),
        "precision": (2 * sq, "k-NN radii of samples and test (products)"),
        "nn_distance_ratio": (mm_seconds(n, N_TRAIN, D_FEAT)
                              + mm_seconds(n, N_TRAIN, D_PIX, torch.int8),
                              "samples x train: features (float32) and pixels (int8)"),
        "cas": (None, "training"),
    }
    print(f"{'stage':20s} {'seconds':>8s} {'floor':>8s}  floor is")
    for key, value in sorted(seconds.items(), key=lambda kv: -kv[1]):
        floor, what = floors.get(key, (None, ""))
        shown = f"{floor:8.2f}" if floor is not None else "       -"
        print(f"{key:20s} {value:8.2f} {shown}  {what}")


if __name__ == "__main__":
    main(sys.argv[1])
