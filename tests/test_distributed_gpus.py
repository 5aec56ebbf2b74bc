"""Sharded sweeps with GPUs per evaluation (issue 15): an evaluation waiting for its shards
keeps its GPUs (Ray lends out only a blocked task's CPUs), so a sweep whose evaluations hold
every GPU would wait for ever unless each evaluation reserves its shards' GPUs with its own.
Runs a local Ray that declares three GPUs on this CPU-only machine (Ray schedules by the
declared count; the evaluations themselves run on the CPU)."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

import gmbench
from gmbench.run.sweeps import SweepError

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "baselines" / "ppca.py"


@pytest.fixture(scope="module")
def three_gpu_ray():
    """A local Ray of 3 CPUs and 3 declared GPUs, no dashboard, no usage statistics."""
    ray_module = pytest.importorskip("ray", reason='needs Ray: pip install "gmbench[ray]"')
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray_module.init(num_cpus=3, num_gpus=3, include_dashboard=False, logging_level="WARNING")
    yield ray_module
    ray_module.shutdown()


def test_sharded_evaluations_cannot_hold_every_gpu_while_their_shards_wait(three_gpu_ray,
                                                                            tmp_path):
    """Three evaluations of one GPU with two shards each: started as plain tasks, the three
    drivers take every GPU and their shards never start (checked by hand: still waiting
    after 7 minutes). Each evaluation now reserves three GPUs for its driver and shards
    together, so they run one at a time and finish."""
    result: dict[str, gmbench.SweepReport] = {}

    def run() -> None:
        result["report"] = gmbench.sweep(
            [MODEL], "digits", "0-2", board=tmp_path / "b.csv", out=tmp_path / "runs",
            metrics=["fid"], n_samples=500, device="cpu", runner="ray", shards=2,
            gpus_per_eval=1, progress=False)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=600)
    assert not worker.is_alive(), "the sharded GPU sweep waits for ever"
    report = result["report"]
    assert report.exit_code == 0, report.describe()
    assert [o.status for o in report.outcomes] == ["done"] * 3
    for seed in range(3):
        doc = json.loads((tmp_path / "runs" / f"ppca-digits-seed{seed}" / "results.json"
                          ).read_text())
        assert doc["provenance"]["shards"] == 1  # 500 samples: one block, one shard
    deadline = time.monotonic() + 60  # the placement groups are removed, their GPUs free
    while three_gpu_ray.available_resources().get("GPU", 0) < 3 - 1e-9:
        assert time.monotonic() < deadline, three_gpu_ray.available_resources()
        time.sleep(0.5)


def test_a_sharded_evaluation_larger_than_the_cluster_is_refused(three_gpu_ray, tmp_path):
    with pytest.raises(SweepError, match=r"reserves 4.5 GPUs per evaluation .* has 3"):
        gmbench.sweep([MODEL], "digits", "0", board=tmp_path / "b.csv",
                      out=tmp_path / "runs", metrics=["fid"], device="cpu", runner="ray",
                      shards=2, gpus_per_eval=1.5, progress=False)
