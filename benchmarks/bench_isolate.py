"""``--isolate``'s cost: the default evaluation (every applicable metric, default sample count)
of the VAE baseline, in gmbench's process and in isolated workers, in the same process, on
``digits`` and on Fashion-MNIST. The VAE crosses the channel with every member the runner
calls (``sample``, ``log_prob`` of the test and training splits, ``encode``/``decode``).

Run: ``python -m pytest benchmarks/bench_isolate.py --benchmark-enable``; each group's relative
column is the ratio of the isolated run to the in-process one (one round each: a default
evaluation takes from seconds on digits to minutes on Fashion-MNIST). The metric values of
the two runs are asserted equal.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import gmbench

VAE = Path(__file__).resolve().parents[1] / "baselines" / "vae.py"
VALUES: dict[tuple[str, bool], dict[str, float]] = {}


def _fashion_or_skip() -> None:
    from gmbench.datasets import get_dataset
    from gmbench.errors import DatasetError

    try:
        get_dataset("fashion-mnist")
    except DatasetError as exc:
        pytest.skip(str(exc))


WARM: set[str] = set()


@pytest.mark.parametrize("dataset", ["digits", "fashion-mnist"])
@pytest.mark.parametrize("isolate", [False, True], ids=["in-process", "isolated"])
def test_default_evaluation(benchmark, dataset, isolate):
    if dataset != "digits":
        _fashion_or_skip()
    if dataset not in WARM:  # an untimed run first: the test split's features cached
        gmbench.evaluate(str(VAE), dataset=dataset, seed=0, metrics=["fid"], n_samples=2000,
                         progress=False)
        WARM.add(dataset)
    benchmark.group = f"isolate-{dataset}"
    result = benchmark.pedantic(
        lambda: gmbench.evaluate(str(VAE), dataset=dataset, seed=0, isolate=isolate,
                                 progress=False), rounds=1, iterations=1)
    VALUES[dataset, isolate] = {k: m.value for k, m in result.metrics.items()}
    other = VALUES.get((dataset, not isolate))
    if other is not None:
        assert other == VALUES[dataset, isolate]
