"""Sample-quality metrics on 10k precomputed features: gmbench vs torch-fidelity vs prdc.

Run: ``python -m pytest benchmarks/bench_sample_quality.py --benchmark-enable -q -s``

Three timings in one group, on the same features (10,000 samples against 10,000 test points,
128-d, from the Fashion-MNIST classifier when its weights are installed, else Gaussian):

- ``gmbench``: all seven metrics with their intervals (IS, FID + bootstrap, KID + variance,
  precision/recall, density/coverage), from :func:`gmbench.metrics.sample_quality.sample_quality`;
- ``torch-fidelity``: ``torch_fidelity.calculate_metrics(isc, fid, kid, prc)`` with its
  defaults, fed the same features through a pass-through feature extractor;
- ``prdc``: the published ``prdc.compute_prdc`` (precision, recall, density, coverage), if
  installed.

``test_peak_memory`` runs each in a fresh subprocess at n = 5,000 and 10,000 and prints the peak
resident memory above the baseline (features loaded): gmbench's grows linearly in n, the
reference implementations' quadratically.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch_fidelity
from torch_fidelity import FeatureExtractorBase, register_feature_extractor
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from gmbench.estimators.image_quality import sample_quality
from gmbench.features.classifier import classifier_available, classifier_for

N = 10_000


class PassThrough(FeatureExtractorBase):
    """Items are precomputed ``[features | logits]`` rows; returns the two slices."""

    def __init__(self, name, features_list, **kwargs):
        super().__init__(name, features_list)

    @staticmethod
    def get_provided_features_list():
        return "features", "logits"

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return "logits" if metric == "isc" else "features"

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 138)

    def forward(self, x):
        out = {"features": x[:, :128], "logits": x[:, 128:]}
        return tuple(out[k] for k in self.features_list)


if "bench-passthrough" not in FEATURE_EXTRACTORS_REGISTRY:
    register_feature_extractor("bench-passthrough", PassThrough)


class Rows(torch.utils.data.Dataset):
    def __init__(self, rows: np.ndarray) -> None:
        self.rows = torch.from_numpy(rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.rows[i]


def make_features(n: int = N) -> dict[str, np.ndarray]:
    if classifier_available("fashion-mnist"):
        from gmbench.datasets import get_dataset

        ds = get_dataset("fashion-mnist")
        clf = classifier_for("fashion-mnist")
        fake = clf.extract(ds.train.x[:n])
        real = clf.extract(ds.test.x[:n])
        source = "fashion-mnist classifier (train[:n] vs test[:n])"
    else:
        rng = np.random.default_rng(0)
        fake = {"features": np.maximum(rng.normal(size=(n, 128)), 0).astype(np.float32),
                "logits": rng.normal(size=(n, 10)).astype(np.float32)}
        real = {"features": np.maximum(rng.normal(size=(n, 128)) + 0.1, 0).astype(np.float32),
                "logits": rng.normal(size=(n, 10)).astype(np.float32)}
        source = "rectified Gaussian features"
    return {"fake": fake["features"], "fake_logits": fake["logits"], "real": real["features"],
            "real_logits": real["logits"], "source": np.array(source)}


@pytest.fixture(scope="module")
def features() -> dict[str, np.ndarray]:
    torch.set_num_threads(2)
    return make_features()


def ours(f: dict[str, np.ndarray]) -> dict[str, float]:
    res = sample_quality(f["fake"], f["real"], fake_logits=f["fake_logits"], seed=0)
    return {k: e.value for k, e in res.estimates.items()}


def theirs(f: dict[str, np.ndarray]) -> dict[str, float]:
    rows1 = np.concatenate([f["fake"], f["fake_logits"]], axis=1)
    rows2 = np.concatenate([f["real"], f["real_logits"]], axis=1)
    return torch_fidelity.calculate_metrics(
        input1=Rows(rows1), input2=Rows(rows2), feature_extractor="bench-passthrough",
        isc=True, fid=True, kid=True, prc=True, cuda=False, cache=False, verbose=False)


def published_prdc(f: dict[str, np.ndarray]) -> dict[str, float]:
    import prdc

    return {k: float(v) for k, v in prdc.compute_prdc(
        real_features=f["real"], fake_features=f["fake"], nearest_k=5).items()}


RESULTS: dict[str, dict[str, float]] = {}


@pytest.mark.benchmark(group="sample-quality-10k")
def test_gmbench_all_seven(benchmark, features):
    RESULTS["gmbench"] = benchmark.pedantic(ours, args=(features,), rounds=1, iterations=1)


@pytest.mark.benchmark(group="sample-quality-10k")
def test_torch_fidelity_four(benchmark, features):
    RESULTS["torch-fidelity"] = benchmark.pedantic(theirs, args=(features,), rounds=1,
                                                   iterations=1)


@pytest.mark.benchmark(group="sample-quality-10k")
def test_prdc_package(benchmark, features):
    pytest.importorskip("prdc")
    RESULTS["prdc"] = benchmark.pedantic(published_prdc, args=(features,), rounds=1,
                                         iterations=1)


def test_values_agree(features):
    ours_, tf = RESULTS["gmbench"], RESULTS["torch-fidelity"]
    print(f"\nfeatures: {features['source']}")
    for name, values in RESULTS.items():
        print(f"{name}: {json.dumps({k: round(float(v), 6) for k, v in values.items()})}")
    assert ours_["fid"] == pytest.approx(tf["frechet_inception_distance"], rel=1e-5)
    # IS and KID draw their shuffle / subsets from other seeds; P/R are the same function
    assert ours_["inception_score"] == pytest.approx(tf["inception_score_mean"], rel=0.05)
    assert ours_["precision"] == pytest.approx(tf["precision"], abs=1e-3)
    assert ours_["recall"] == pytest.approx(tf["recall"], abs=1e-3)
    if "prdc" in RESULTS:  # prdc's strict < and our <= differ only on exact ties
        assert ours_["density"] == pytest.approx(RESULTS["prdc"]["density"], abs=1e-3)
        assert ours_["coverage"] == pytest.approx(RESULTS["prdc"]["coverage"], abs=1e-3)


CHILD = textwrap.dedent("""
    import sys, numpy as np, torch
    torch.set_num_threads(2)
    sys.path.insert(0, {bench_dir!r})
    from bench_sample_quality import ours, theirs, published_prdc
    f = dict(np.load({path!r}))
    f = {{k: (v[:{n}] if v.ndim else v) for k, v in f.items()}}
    with open("/proc/self/clear_refs", "w") as fh:  # reset the peak-RSS counter (VmHWM)
        fh.write("5")
    rss = lambda key: int(next(l for l in open("/proc/self/status") if l.startswith(key)).split()[1])
    base = rss("VmRSS:")
    {{"gmbench": ours, "torch-fidelity": theirs, "prdc": published_prdc}}[{which!r}](f)
    print("PEAK_KB", rss("VmHWM:") - base)
""")


def peak_kb(which: str, n: int, path: Path) -> int:
    code = CHILD.format(bench_dir=str(Path(__file__).parent), n=n, which=which, path=str(path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    return int(out.split("PEAK_KB")[1].split()[0])


@pytest.mark.benchmark(group="memory")
def test_peak_memory(benchmark, features, tmp_path):
    import importlib.util

    path = tmp_path / "features.npz"
    np.savez(path, **features)
    methods = ["gmbench", "torch-fidelity"]
    if importlib.util.find_spec("prdc"):
        methods.append("prdc")
    table = {m: {n: peak_kb(m, n, path) / 1024 for n in (5_000, N)} for m in methods}
    benchmark.extra_info["peak_mb_above_baseline"] = table
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    print("\npeak MB above baseline (n=5000 -> n=10000):")
    for m, row in table.items():
        print(f"  {m:15s} {row[5_000]:8.0f} -> {row[N]:8.0f}")


# ------------------------------------------------------------------ from images, cold and warm
# The four metrics torch-fidelity computes (IS, FID, KID, precision/recall) from 10,000 images
# against the 10,000 Fashion-MNIST test images in the bundled classifier's feature space:
# gmbench (`gmbench.evaluate(samples=...)`, with its intervals) against
# `torch_fidelity.calculate_metrics(..., feature_extractor="gmbench-fashion-mnist")`, each in
# a fresh interpreter (the timed part starts after the imports), alternating which goes first.
# cold: empty caches (gmbench's feature cache; torch-fidelity's cache=False); warm: the
# real split's features cached by an earlier run (gmbench's feature cache; torch-fidelity's
# cache=True with a named input2 cache). Ratio = gmbench / torch-fidelity; target <= 0.9.
IMAGE_CHILD = textwrap.dedent("""
    import json, sys, time
    import numpy as np, torch
    import gmbench, torch_fidelity
    import gmbench.features.fidelity  # registers gmbench-<dataset> with torch-fidelity
    from gmbench.datasets import get_dataset
    which, warm, cache_root, report = {which!r}, {warm!r}, {cache_root!r}, {report!r}
    ds = get_dataset("fashion-mnist")
    fake = ds.train.x[:{n}]  # stands in for 10k model samples (uint8 levels)

    class Images(torch.utils.data.Dataset):
        def __init__(self, x):
            self.x = torch.from_numpy(np.ascontiguousarray(x))
        def __len__(self):
            return len(self.x)
        def __getitem__(self, i):
            return self.x[i]

    tic = time.perf_counter()
    if which == "gmbench":
        res = gmbench.evaluate(samples=fake, dataset="fashion-mnist", progress=False, seed=0,
                               metrics=["inception_score", "fid", "kid", "precision", "recall"])
        values = {{k: res[k].value for k in ("inception_score", "fid", "kid", "precision",
                                             "recall")}}
    else:
        out = torch_fidelity.calculate_metrics(
            input1=Images(fake), input2=Images(ds.test.x), input2_cache_name="fm-test",
            feature_extractor="gmbench-fashion-mnist", isc=True, fid=True, kid=True, prc=True,
            cuda=False, verbose=False, cache=warm, cache_root=cache_root)
        values = {{"inception_score": out["inception_score_mean"],
                   "fid": out["frechet_inception_distance"],
                   "kid": out["kernel_inception_distance_mean"],
                   "precision": out["precision"], "recall": out["recall"]}}
    seconds = time.perf_counter() - tic
    with open(report, "w") as fh:
        json.dump({{"seconds": seconds, "values": values}}, fh)
""")


def _image_run(which: str, warm: bool, tmp: Path, tag: str) -> dict:
    import os

    cache = tmp / f"{which}-{'warm' if warm else tag}"
    cache.mkdir(exist_ok=True)
    report = tmp / f"{which}-{tag}.json"
    code = IMAGE_CHILD.format(which=which, warm=warm, cache_root=str(cache), report=str(report),
                              n=N)
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "OMP_NUM_THREADS": "2"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(report.read_text())


def images_side_by_side(tmp: Path, warm: bool, rounds: int = 2) -> dict[str, dict]:
    best: dict[str, dict] = {}
    if warm:  # fill each side's cache once
        for which in ("gmbench", "torch-fidelity"):
            _image_run(which, True, tmp, "fill")
    for r in range(rounds):
        order = ("gmbench", "torch-fidelity") if r % 2 == 0 else ("torch-fidelity", "gmbench")
        for which in order:
            res = _image_run(which, warm, tmp, f"round{r}")
            if which not in best or res["seconds"] < best[which]["seconds"]:
                best[which] = res
    return best


@pytest.mark.benchmark(group="sample-quality-images")
@pytest.mark.parametrize("cache", ["cold", "warm"])
def test_four_metrics_from_images_against_torch_fidelity(benchmark, tmp_path, cache):
    if not classifier_available("fashion-mnist"):
        pytest.skip("needs the bundled Fashion-MNIST classifier")
    from gmbench.datasets import DatasetError, get_dataset

    try:
        get_dataset("fashion-mnist")
    except DatasetError as exc:
        pytest.skip(f"needs Fashion-MNIST: {exc}")
    best = benchmark.pedantic(images_side_by_side, args=(tmp_path, cache == "warm"), rounds=1,
                              iterations=1)
    ours_, theirs_ = best["gmbench"], best["torch-fidelity"]
    ratio = ours_["seconds"] / theirs_["seconds"]
    benchmark.extra_info.update({"gmbench_s": round(ours_["seconds"], 2),
                                 "torch_fidelity_s": round(theirs_["seconds"], 2),
                                 "ratio": round(ratio, 3)})
    print(f"\n{cache}: gmbench {ours_['seconds']:.2f} s, torch-fidelity "
          f"{theirs_['seconds']:.2f} s: ratio {ratio:.2f}")
    a, b = ours_["values"], theirs_["values"]
    assert a["fid"] == pytest.approx(b["fid"], rel=1e-4)
    assert a["precision"] == pytest.approx(b["precision"], abs=1e-3)
    assert a["recall"] == pytest.approx(b["recall"], abs=1e-3)
    assert a["inception_score"] == pytest.approx(b["inception_score"], rel=0.05)
