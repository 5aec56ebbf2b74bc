"""Sample-quality metrics: closed forms, reference implementations, properties, and the
Fashion-MNIST acceptance checks of issue 4."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import linalg
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_isc import isc_features_to_metric
from torch_fidelity.metric_prc import calculate_precision_recall_part

from gmbench.datasets import get_dataset
from gmbench.estimators.frechet import frechet_delta_se, frechet_distance, gaussian_statistics
from gmbench.estimators.image_quality import (
    fid_estimate,
    inception_score_estimate,
    kid_estimate,
    prdc_estimates,
    precision_recall_values,
    sample_quality,
)
from gmbench.estimators.prdc import density_coverage, jackknife_se, kth_neighbor_radius, prdc
from gmbench.features.classifier import classifier_available, classifier_for


def _cov(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


# ------------------------------------------------------------------ Fréchet distance
def test_frechet_closed_form_diagonal():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    expected = 1 + 0 + 4 + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected,
                                                                               rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_frechet_on_features_equals_closed_form_and_torch_fidelity(seed):
    rng = np.random.default_rng(seed)
    d = 16
    f1 = rng.multivariate_normal(np.zeros(d), _cov(rng, d), size=500)
    f2 = rng.multivariate_normal(np.full(d, 0.3), _cov(rng, d), size=400)
    mu1, c1 = gaussian_statistics(f1)
    mu2, c2 = gaussian_statistics(f2)
    np.testing.assert_allclose(c1, np.cov(f1, rowvar=False), rtol=1e-10)
    s1 = linalg.sqrtm(c1)
    closed = (((mu1 - mu2) ** 2).sum() + np.trace(c1) + np.trace(c2)
              - 2 * np.trace(linalg.sqrtm(s1 @ c2 @ s1)).real)
    ours = frechet_distance(mu1, c1, mu2, c2)
    theirs = fid_statistics_to_metric(fid_features_to_statistics(torch.from_numpy(f1)),
                                      fid_features_to_statistics(torch.from_numpy(f2)),
                                      verbose=False)["frechet_inception_distance"]
    assert ours == pytest.approx(closed, rel=1e-5)
    assert ours == pytest.approx(theirs, rel=1e-5)
    assert fid_estimate(f1, f2).value == pytest.approx(ours, rel=1e-5)
    assert frechet_distance(mu1, c1, mu1, c1) == pytest.approx(0, abs=1e-8)


def test_fid_delta_se_is_the_closed_form_in_one_dimension():
    """In one dimension FID = (mu - m)^2 + (s - sigma)^2, whose influence function is
    2 (mu - m)(x - mu) + (1 - sigma / s)((x - mu)^2 - s^2): the standard error is its spread
    over the samples, to rounding."""
    rng = np.random.default_rng(3)
    x = rng.normal(0.4, 1.3, size=(500, 1))
    m, sigma = -0.2, 0.8
    mu, s = x.mean(), x.std(ddof=1)
    influence = 2 * (mu - m) * (x[:, 0] - mu) + (1 - sigma / s) * ((x[:, 0] - mu) ** 2 - s ** 2)
    expected = influence.std(ddof=1) / math.sqrt(len(x))
    got = frechet_delta_se(x, np.array([m]), np.array([[sigma ** 2]]))
    assert got == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(("dim", "n_test"), [(8, 1000), (64, 500)])
def test_fid_delta_se_matches_the_spread_between_runs(dim, n_test):
    """The standard error is what FID moves between runs of one model against a fixed test
    split: over 300 runs of 2,000 samples the mean standard error lies within 12% of the runs'
    standard deviation (three times the 4% sampling error of that deviation), and the
    standardised differences of the 150 pairs of runs have a mean square in [0.65, 1.35]
    (about three standard errors around 1). A bootstrap of the samples gives twice the
    deviation in 2,048 dimensions; with 400 samples near FID's floor the delta method is about
    10% wide (benchmarks/null_differences.py, docs/metrics.md)."""
    rng = np.random.default_rng(dim)
    scale = rng.normal(size=(dim, dim)) / math.sqrt(dim) + np.eye(dim)
    real_stats = gaussian_statistics(rng.normal(size=(n_test, dim)) @ scale.T)
    values, ses = [], []
    for seed in range(300):
        fake = 0.1 + 1.1 * np.random.default_rng(10_000 + seed).normal(size=(2000, dim)) @ scale.T
        values.append(frechet_distance(*gaussian_statistics(fake), *real_stats))
        ses.append(frechet_delta_se(fake, *real_stats))
    values, ses = np.array(values), np.array(ses)
    assert ses.mean() == pytest.approx(values.std(ddof=1), rel=0.12)
    z = (values[::2] - values[1::2]) / np.hypot(ses[::2], ses[1::2])
    assert 0.65 <= float(np.mean(z ** 2)) <= 1.35


def test_weighted_statistics_equal_repeated_rows():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 4))
    w = rng.integers(0, 3, size=30)
    mu, cov = gaussian_statistics(x, w)
    rep = np.repeat(x, w, axis=0)
    np.testing.assert_allclose(mu, rep.mean(0), rtol=1e-12)
    np.testing.assert_allclose(cov, np.cov(rep, rowvar=False), rtol=1e-10)


# ------------------------------------------------------------------ density / coverage
def _reference_prdc(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, float]:
    """The paper's formulas, directly, with closed balls."""
    d_rr = np.sqrt(((real[:, None] - real[None]) ** 2).sum(-1))
    np.fill_diagonal(d_rr, np.inf)
    radii = np.sort(d_rr, axis=1)[:, k - 1]
    d_rf = np.sqrt(((real[:, None] - fake[None]) ** 2).sum(-1))  # (N, M)
    density = (d_rf <= radii[:, None]).sum() / (k * len(fake))
    coverage = (d_rf.min(axis=1) <= radii).mean()
    return float(density), float(coverage)


@pytest.mark.parametrize("seed", range(4))
def test_density_coverage_match_the_paper_formulas(seed):
    rng = np.random.default_rng(seed)
    real = rng.normal(size=(120, 6))
    fake = rng.normal(size=(90, 6)) * rng.uniform(0.5, 1.5) + rng.uniform(-0.5, 0.5)
    for k in (1, 5):
        dc = density_coverage(real, fake, k=k, chunk=17)
        ref = _reference_prdc(real, fake, k)
        assert dc.density == pytest.approx(ref[0], abs=1e-12)
        assert dc.coverage == pytest.approx(ref[1], abs=1e-12)


def test_density_coverage_match_the_prdc_package():
    prdc = pytest.importorskip("prdc")
    rng = np.random.default_rng(5)
    real = rng.normal(size=(300, 8)).astype(np.float32)
    fake = (rng.normal(size=(250, 8)) * 1.2 + 0.2).astype(np.float32)
    ref = prdc.compute_prdc(real_features=real, fake_features=fake, nearest_k=5)
    dc = density_coverage(real, fake, k=5)
    assert dc.density == pytest.approx(ref["density"], abs=1e-9)
    assert dc.coverage == pytest.approx(ref["coverage"], abs=1e-9)


def test_identical_sets_have_full_coverage_even_with_duplicates():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 5))
    assert density_coverage(x, x, k=5).coverage == 1.0
    dup = np.repeat(x[:15], 8, axis=0)  # every point occurs 8 > k times: radius 0
    dc = density_coverage(dup, dup, k=5)
    assert dc.coverage == 1.0
    assert dc.density == pytest.approx(8 / 5)  # each fake sits in the 8 balls of its copies
    assert _reference_prdc(dup, dup, 5) == pytest.approx((8 / 5, 1.0))


def test_prdc_results_do_not_depend_on_chunk_size():
    rng = np.random.default_rng(1)
    real, fake = rng.normal(size=(200, 10)), rng.normal(size=(150, 10)) + 0.2
    ref = density_coverage(real, fake, k=5, chunk=1024)
    for chunk in (1, 13, 64):
        dc = density_coverage(real, fake, k=5, chunk=chunk)
        np.testing.assert_allclose(dc.density_terms, ref.density_terms, rtol=1e-12)
        np.testing.assert_array_equal(dc.covered, ref.covered)
    np.testing.assert_allclose(kth_neighbor_radius(real, k=5, chunk=7),
                               kth_neighbor_radius(real, k=5), rtol=1e-12)
    p1 = precision_recall_values(fake.astype(np.float32), real.astype(np.float32),
                                 batch_size=17)
    p2 = precision_recall_values(fake.astype(np.float32), real.astype(np.float32),
                                 batch_size=1000)
    assert p1 == p2
    a = prdc(real, fake, seed=0, chunk=1024)
    for chunk in (1, 13, 64):
        b = prdc(real, fake, seed=0, chunk=chunk)
        assert b.values == pytest.approx(a.values, rel=1e-12)
        for side in ("real_replicates", "fake_replicates"):
            for key, reps in getattr(a, side).items():
                np.testing.assert_allclose(getattr(b, side)[key], reps, rtol=1e-12)


def _brute_prdc(real: np.ndarray, fake: np.ndarray, k_pr: int = 3, k_dc: int = 5
                ) -> dict[str, float]:
    """The four definitions, directly, with closed balls."""
    d_rr = np.sqrt(((real[:, None] - real[None]) ** 2).sum(-1))
    d_ff = np.sqrt(((fake[:, None] - fake[None]) ** 2).sum(-1))
    np.fill_diagonal(d_rr, np.inf)
    np.fill_diagonal(d_ff, np.inf)
    r_pr, r_dc = np.sort(d_rr, 1)[:, k_pr - 1], np.sort(d_rr, 1)[:, k_dc - 1]
    s_pr = np.sort(d_ff, 1)[:, k_pr - 1]
    d_fr = np.sqrt(((fake[:, None] - real[None]) ** 2).sum(-1))  # (M, N)
    return {"precision": (d_fr <= r_pr[None]).any(1).mean(),
            "recall": (d_fr <= s_pr[:, None]).any(0).mean(),
            "density": (d_fr <= r_dc[None]).sum() / (k_dc * len(fake)),
            "coverage": (d_fr.min(0) <= r_dc).mean()}


@pytest.mark.parametrize("seed", range(3))
def test_prdc_jackknife_replicates_equal_recomputing_without_each_group(seed):
    """Every leave-one-group-out replicate (radii of the remaining points regrown from their
    neighbour lists) equals the four metrics recomputed from scratch without that group."""
    rng = np.random.default_rng(seed)
    real = rng.normal(size=(300, 6))
    fake = rng.normal(size=(250, 6)) * 1.2 + 0.2
    res = prdc(real, fake, seed=seed, groups=5)
    assert res.values == pytest.approx(_brute_prdc(real, fake), abs=1e-12)
    groups = np.random.default_rng(seed)
    gr, gf = groups.permutation(300) % 5, groups.permutation(250) % 5
    for g in range(5):
        without_real = _brute_prdc(real[gr != g], fake)
        without_fake = _brute_prdc(real, fake[gf != g])
        for key in res.values:
            assert res.real_replicates[key][g] == pytest.approx(without_real[key], abs=1e-12)
            assert res.fake_replicates[key][g] == pytest.approx(without_fake[key], abs=1e-12)
    assert res.stderr("recall") == pytest.approx(math.hypot(
        jackknife_se(res.real_replicates["recall"]), jackknife_se(res.fake_replicates["recall"])))


# ------------------------------------------------------------------ precision / recall / IS
def test_precision_recall_match_the_definition():
    rng = np.random.default_rng(3)
    real = rng.normal(size=(150, 4))
    fake = rng.normal(size=(120, 4)) * 0.7 + 0.4
    k = 3

    def radii(x: np.ndarray) -> np.ndarray:
        d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
        return np.sort(d, axis=1)[:, k]  # index 0 is the point itself

    d_fr = np.sqrt(((fake[:, None] - real[None]) ** 2).sum(-1))  # (M, N)
    precision = (d_fr <= radii(real)[None]).any(1).mean()
    recall = (radii(fake)[None] >= d_fr.T).any(1).mean()
    est, _ = prdc_estimates(fake.astype(np.float32), real.astype(np.float32), seed=0)
    p, r = est["precision"], est["recall"]
    assert p.value == pytest.approx(precision) and r.value == pytest.approx(recall)
    assert p.ci_low <= p.value <= p.ci_high and p.n == 120 and r.n == 150


def test_inception_score_matches_the_formula():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(1000, 10)) * 3
    est = inception_score_estimate(logits.astype(np.float32), seed=11)
    perm = np.random.RandomState(11).permutation(1000)
    p = torch.from_numpy(logits[perm].astype(np.float32)).double().softmax(1).numpy()
    scores = []
    for part in np.split(p, 10):
        py = part.mean(0, keepdims=True)
        scores.append(np.exp((part * (np.log(part) - np.log(py))).sum(1).mean()))
    assert est.value == pytest.approx(np.mean(scores), rel=1e-9)
    assert est.stderr == pytest.approx(np.std(scores, ddof=1) / np.sqrt(10), rel=1e-9)
    ref = isc_features_to_metric(torch.from_numpy(logits.astype(np.float32)), rng_seed=11)
    assert est.value == pytest.approx(ref["inception_score_mean"], rel=1e-12)


def test_sample_quality_on_identical_features_is_best():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(600, 8)).astype(np.float32)
    res = sample_quality(real, real, fake_logits=None, seed=0).estimates
    assert res["fid"].value == pytest.approx(0, abs=1e-6)
    assert res["precision"].value == 1.0 and res["recall"].value == 1.0
    assert res["coverage"].value == 1.0
    # the unbiased MMD^2 of a set against itself is below 0 (its cross term keeps the
    # diagonal); independent draws from one distribution give a CI around 0 (tests below)
    assert res["kid"].value <= 0
    # ... far enough below 0 that its normal interval lies wholly below: extended up to 0
    assert res["kid"].value + 1.96 * res["kid"].stderr < 0
    assert res["kid"].ci_high == 0.0 and "extended up to 0" in res["kid"].ci_method
    for est in res.values():
        assert est.ci_low <= est.value <= est.ci_high


def test_calculate_precision_recall_part_is_torch_fidelity():
    # guard: the function we call is torch-fidelity's own, with its `<=` balls
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(50, 3)).astype(np.float32))
    assert calculate_precision_recall_part(x, x, 3, 16) == (1.0, 1.0)


# ------------------------------------------------------------------ real data
def _two_halves(name: str) -> tuple[np.ndarray, np.ndarray]:
    ds = get_dataset(name)
    feats = classifier_for(name).features(ds.test.x)
    order = np.random.default_rng(0).permutation(len(feats))
    half = len(feats) // 2
    return feats[order[:half]], feats[order[half:]]


@pytest.mark.skipif(not classifier_available("digits"), reason="no digits classifier")
def test_kid_ci_contains_zero_for_two_halves_of_digits_test():
    a, b = _two_halves("digits")
    kid, se_runs = kid_estimate(a, b, seed=0)
    assert kid.contains(0.0), kid
    assert 0 < se_runs < kid.stderr  # one set fixed: less changes
    est, _ = prdc_estimates(a, b, seed=0)
    assert 0.5 < est["density"].value < 1.5 and est["coverage"].value > 0.5


@pytest.mark.slow
@pytest.mark.skipif(not classifier_available("fashion-mnist"), reason="no fashion-mnist weights")
def test_kid_ci_contains_zero_for_two_halves_of_fashion_mnist_test():
    a, b = _two_halves("fashion-mnist")
    kid, _ = kid_estimate(a, b, seed=0)
    assert kid.contains(0.0), kid


FM_NOISE = """
    import numpy as np
    DATASET = "fashion-mnist"
    class Noise:
        def sample(self, n):
            return np.random.randint(0, 256, size=(n, 1, 28, 28))
    model = Noise()
"""

FM_REPLAY = """
    import numpy as np
    from gmbench.datasets import get_dataset
    DATASET = "fashion-mnist"
    class Replay:
        def __init__(self):
            self.x = get_dataset("fashion-mnist").train.x
        def sample(self, n):
            return self.x[np.random.choice(len(self.x), n, replace=False)]
    model = Replay()
"""

FM_PIXELWISE = """
    import numpy as np
    from gmbench.datasets import get_dataset
    DATASET = "fashion-mnist"
    class Pixelwise:  # independent pixels, each from its marginal over the train split
        def __init__(self):
            self.x = get_dataset("fashion-mnist").train.x.reshape(60000, -1)
        def sample(self, n):
            rows = np.random.randint(0, len(self.x), size=(n, self.x.shape[1]))
            return self.x[rows, np.arange(self.x.shape[1])].reshape(n, 1, 28, 28)
    model = Pixelwise()
"""

QUALITY = "inception_score,fid,kid,precision,recall,density,coverage"


@pytest.mark.slow
@pytest.mark.skipif(not classifier_available("fashion-mnist"), reason="no fashion-mnist weights")
def test_fashion_mnist_noise_is_worst_and_replay_is_near_perfect(write_model, gmbench_cli):
    results = {}
    for name, source in (("noise", FM_NOISE), ("replay", FM_REPLAY),
                         ("pixelwise", FM_PIXELWISE)):
        run = gmbench_cli("evaluate", write_model(source, f"{name}.py"), "--metrics", QUALITY,
                          "--n-samples", "2000")
        assert run.code == 0, run.err
        results[name] = run.results["metrics"]
    noise, replay, pixelwise = results["noise"], results["replay"], results["pixelwise"]
    for key in ("fid", "precision", "coverage"):
        worse = max if key == "fid" else min
        assert worse(results, key=lambda m, key=key: results[m][key]["value"]) == "noise", key
    assert replay["fid"]["value"] * 20 <= noise["fid"]["value"]
    assert replay["precision"]["value"] > 0.6 and replay["recall"]["value"] > 0.6
    assert replay["inception_score"]["value"] >= 2 * noise["inception_score"]["value"]
    assert pixelwise["fid"]["value"] > replay["fid"]["value"]
    rec = replay["fid"]
    assert rec["feature_space"].startswith("gmbench-fashion-mnist (sha256 ")
    assert rec["n"] == 2000 and rec["n_reference"] == 10000
    for key in QUALITY.split(","):
        r = replay[key]
        assert r["ci_low"] <= r["value"] <= r["ci_high"], key


DIGITS_REPLAY = """
    import numpy as np
    from gmbench.datasets import get_dataset
    DATASET = "digits"
    class Replay:
        def __init__(self):
            self.x = get_dataset("digits").train.x
        def sample(self, n):
            return self.x[np.random.choice(len(self.x), n, replace=False)]
    model = Replay()
"""


@pytest.mark.skipif(not classifier_available("digits"), reason="no digits classifier")
def test_digits_records_name_feature_space_and_n(write_model, gmbench_cli, tmp_path,
                                                 monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = write_model(DIGITS_REPLAY)
    run = gmbench_cli("evaluate", path, "--metrics", QUALITY, "--n-samples", "300")
    assert run.code == 0, run.err
    sha = classifier_for("digits").sha256
    for key in QUALITY.split(","):
        rec = run.metric(key)
        assert rec["feature_space"] == f"gmbench-digits (sha256 {sha[:12]})", key
        assert rec["weights_sha256"] == sha
        assert rec["n_samples"] == 300 and rec["n_reference"] == 360
        assert rec["ci_method"]
    assert run.metric("fid")["n"] == 300
    assert run.metric("recall")["n"] == 360  # recall's units are test points
    assert run.metric("precision")["value"] > 0.6 and run.metric("coverage")["value"] > 0.6

    pixels = gmbench_cli("evaluate", path, "--metrics", "fid,coverage", "--n-samples", "300",
                         "--feature-extractor", "pixels")
    assert pixels.code == 0, pixels.err
    assert pixels.metric("fid")["feature_space"] == "pixels"
    no_logits = gmbench_cli("evaluate", path, "--metrics", "inception_score",
                            "--feature-extractor", "pixels")
    assert no_logits.code == 2 and "needs class logits" in no_logits.err


def test_sample_quality_skips_non_images(write_model, gmbench_cli):
    path = write_model("""
        import numpy as np
        DATASET = "gauss-2"
        class M:
            def sample(self, n):
                return np.random.normal(size=(n, 2))
        model = M()
    """)
    run = gmbench_cli("evaluate", path, "--metrics", "fid")
    assert run.code == 2 and "image datasets only" in run.err


@pytest.mark.parametrize("kind", ["continuous", "ties"])
def test_reported_precision_recall_count_what_torch_fidelity_counts(kind):
    """gmbench reports precision and recall from its own exact counts (cached test radii);
    they are torch-fidelity's counts on identical features, ties on the ball's edge included
    (integer features), to its float32 rounding of the fraction."""
    rng = np.random.default_rng(3)
    if kind == "ties":
        real = rng.integers(0, 4, size=(700, 4)).astype(np.float32)
        fake = rng.integers(0, 4, size=(500, 4)).astype(np.float32) + (rng.random((500, 4)) < 0.1)
    else:
        real = rng.normal(size=(700, 32)).astype(np.float32)
        fake = (rng.normal(size=(500, 32)) * 1.2 + 0.1).astype(np.float32)
    res = prdc(real, fake, seed=0)
    tf_p, tf_r = calculate_precision_recall_part(torch.from_numpy(fake), torch.from_numpy(real),
                                                 3, 10000)
    assert np.float32(res.values["precision"]) == np.float32(tf_p)
    assert np.float32(res.values["recall"]) == np.float32(tf_r)
    assert 0 < res.values["precision"] < 1  # not a trivial all-in case


class _OtherImages:
    """Draws without replacement from a pool of images (disjoint from the test split, both
    random parts of one i.i.d. set: the same distribution), mirroring a fraction of them."""

    def __init__(self, pool: np.ndarray, mirrored: float) -> None:
        self.pool, self.mirrored = pool, mirrored

    def sample(self, n: int) -> np.ndarray:
        rng = np.random.default_rng(int(torch.randint(0, 2**62, ())))
        x = self.pool[rng.choice(len(self.pool), n, replace=False)].copy()
        k = int(self.mirrored * n)
        x[:k] = x[:k, :, :, ::-1]
        return x


@pytest.mark.slow
@pytest.mark.skipif(not classifier_available("digits"), reason="no digits classifier")
def test_kid_interval_contains_0_for_the_data_and_excludes_it_for_mirrored_images():
    """digits re-split at each seed into a test split and the other images, which the model
    draws (1,000 samples): KID's interval contains 0 in at least 8 of 10 seeds; with 40% of
    the drawn images mirrored it excludes 0 in at least 9 of 10."""
    from gmbench.datasets import Dataset, Split
    from gmbench.models.model import Model, ModelSource
    from gmbench.run.evaluation import run_evaluation
    from gmbench.run.request import RunRequest

    digits = get_dataset("digits")
    pool = np.concatenate([digits.train.x, digits.test.x])
    source = ModelSource(Path("pool.py"), "pool", "0" * 64, None)
    for mirrored, wanted in ((0.0, 8), (0.4, 9)):
        hits = 0
        for seed in range(10):
            order = np.random.default_rng(20_000 + seed).permutation(len(pool))
            test, rest = pool[order[:len(digits.test)]], pool[order[len(digits.test):]]
            data = Dataset(info=digits.info, train=Split(rest), test=Split(test))
            model = Model(_OtherImages(rest, mirrored), source=source, info=digits.info,
                          device="cpu")
            res = run_evaluation(model, data, RunRequest(seed=seed, n_samples=1000),
                                    ["kid"])
            hits += res.metrics["kid"].estimate.contains(0.0) == (mirrored == 0)
        assert hits >= wanted, (mirrored, hits)
