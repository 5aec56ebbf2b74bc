"""One evaluation: a model on a dataset, the shared per-example arrays, and the metric loop.

:class:`Evaluation` computes each expensive array once (test and train log-probabilities,
samples, features) and hands it to every metric that needs it; :func:`evaluate` chooses the
metrics, runs them and returns their :class:`~gmbench.run.results.Results`.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from gmbench.core.background import Background
from gmbench.core.device import platform_id
from gmbench.core.errors import MetricError, ModelError
from gmbench.core.progress import stage
from gmbench.core.rng import COMMON_SEED, child_seed, generator
from gmbench.datasets import Dataset, forget_dataset
from gmbench.features.cache import cached_arrays
from gmbench.features.extractors import (
    FeatureExtractor,
    PixelFeatures,
    extract_all,
    feature_space_label,
    get_extractor,
)
from gmbench.metrics import METRICS, Metric, get_metric
from gmbench.models.model import Model
from gmbench.run.outputs import Artifacts
from gmbench.run.request import MIN_SAMPLES, RunRequest
from gmbench.run.results import Results
from gmbench.storage.per_example import MAX_FEATURES, PerExample
from gmbench.storage.results import MetricRecord, results_document
from gmbench.version import __version__

__all__ = ["Evaluation", "check_sample_budget", "run_evaluation",
           "select_metrics"]

if TYPE_CHECKING:
    from gmbench.run.shards import Gathered

T = TypeVar("T")
MAX_DEFAULT_SAMPLES = 10_000
MIN_DEFAULT_SAMPLES = 2_000  # small test splits (digits: 360) still get precise sample metrics


MAX_SAMPLES = 10_000_000


def available_memory() -> int | None:
    """Bytes of memory available to this process now (``None`` where unknown)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_sample_budget(n: int, dataset: Dataset) -> None:
    """Refuse, before drawing anything, a sample count the metrics cannot use or the machine
    cannot hold (samples as int64/float32 plus their copies and features: about ``3 * 8 * D``
    bytes each, at least 24 KB for Inception features).

    Raises:
        MetricError: naming ``--n-samples`` and what to use instead.
    """
    if n < MIN_SAMPLES:
        raise MetricError(f"--n-samples {n} is too few: sample metrics need at least "
                          f"{MIN_SAMPLES} samples (the Inception Score's 10 splits, the k-NN "
                          "balls of precision, recall and the k-NN KL). Raise --n-samples, or "
                          "run only likelihood metrics with --metrics.")
    if n > MAX_SAMPLES:
        raise MetricError(f"--n-samples {n} is more than gmbench evaluates at once "
                          f"({MAX_SAMPLES:,}); sample metrics gain little beyond 50,000. "
                          "Lower --n-samples.")
    need = n * max(3 * 8 * dataset.info.dim, 24_000)
    free = available_memory()
    if free is not None and need > 0.8 * free:
        raise MetricError(f"--n-samples {n} would need about {need / 2**30:.1f} GiB for the "
                          f"samples and their features, more than the {free / 2**30:.1f} GiB "
                          "this machine has free. Lower --n-samples (10,000 is the default "
                          "on large test splits).")


def default_n_samples(n_test: int) -> int:
    """Samples drawn when ``--n-samples`` is not given: the test split's size, at least
    :data:`MIN_DEFAULT_SAMPLES` and at most :data:`MAX_DEFAULT_SAMPLES`."""
    return min(max(n_test, MIN_DEFAULT_SAMPLES), MAX_DEFAULT_SAMPLES)


class Evaluation:
    """The shared state of one evaluation; metrics read from it, it computes each thing once."""

    def __init__(self, model: Model, dataset: Dataset, config: RunRequest) -> None:
        self.model = model
        self.dataset = dataset
        self.config = config
        self._memo: dict[str, Any] = {}
        self.work = Background()
        self.chosen: frozenset[str] = frozenset()

    @property
    def info(self):  # noqa: ANN201 - DatasetInfo
        return self.dataset.info

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def n_samples(self) -> int:
        n = self.config.n_samples
        return n if n is not None else default_n_samples(len(self.dataset.test))

    def rng(self, *names: str | int) -> np.random.Generator:
        """A generator private to the consumer ``names``, derived from the run seed."""
        return generator(self.seed, *names)

    def memo(self, key: str, compute: Callable[[], T]) -> T:
        """Compute ``key`` once per evaluation (shared by every metric that asks)."""
        if key not in self._memo:
            self._memo[key] = self.work.result(key) if self.work.pending(key) else compute()
        return self._memo[key]

    def computed(self, key: str) -> bool:
        """Whether ``key`` (e.g. ``"samples"``) was computed (or started in the background)
        during this evaluation."""
        return key in self._memo or self.work.pending(key)

    def wanted(self, key: str) -> bool:
        """Whether metric ``key`` runs in this evaluation."""
        return key in self.chosen

    def background(self, key: str, compute: Callable[[], object]) -> None:
        """Start ``compute()`` on the background worker (:mod:`gmbench.core.background`) unless
        ``key`` is computed or started already; :meth:`memo` of ``key`` waits for it."""
        if not self.computed(key):
            self.work.submit(key, compute)

    # ---------------------------------------------------------------- likelihood arrays
    def _log_prob(self, x: np.ndarray, split: str) -> np.ndarray:
        return self.model.log_prob(x, seed=COMMON_SEED, split=split,
                                   batch_size=self.config.batch_size,
                                   dequant_samples=self.config.dequant_samples)

    @property
    def test_log_prob(self) -> np.ndarray:
        """``log P(x)`` (nats) of every test example, shape ``(n_test,)``."""
        return self.memo("test_log_prob", lambda: self._log_prob(self.dataset.test.x, "test"))

    @property
    def train_index(self) -> np.ndarray:
        """Indices of the train examples scored for ``nll_train`` (all, or a seeded subset)."""
        def pick() -> np.ndarray:
            n = len(self.dataset.train)
            if n <= self.config.max_train:
                return np.arange(n)
            return np.sort(generator(COMMON_SEED, "train-subset").choice(
                n, self.config.max_train, replace=False))
        return self.memo("train_index", pick)

    @property
    def train_log_prob(self) -> np.ndarray:
        return self.memo("train_log_prob", lambda: self._log_prob(
            self.dataset.train.x[self.train_index], "train"))

    # ---------------------------------------------------------------- samples
    @property
    def samples(self) -> np.ndarray:
        """``n_samples`` validated model samples, shape ``(n_samples, *shape)``."""
        return self.memo("samples", lambda: self.model.sample(
            self.n_samples, seed=child_seed(self.seed, "samples")))

    # ---------------------------------------------------------------- features
    SPLITS = ("samples", "test", "train")

    def _split_data(self, split: str) -> np.ndarray:
        if split == "samples":
            return self.samples
        if split == "test":
            return self.dataset.test.x
        if split == "train":
            return self.dataset.train.x
        raise ValueError(f"unknown split {split!r}; use one of {self.SPLITS}")

    @property
    def extractor(self) -> FeatureExtractor:
        """The feature extractor of sample metrics (bundled classifier, else pixels)."""
        return self.memo("extractor", lambda: get_extractor(
            self.config.feature_extractor, self.dataset,
            inception_weights=self.config.inception_weights, device=self.config.device))

    @property
    def feature_space(self) -> str:
        """Label recorded in each metric: extractor name and weights sha256, or ``pixels``."""
        return feature_space_label(self.extractor)

    def feature_pass(self, split: str) -> dict[str, np.ndarray]:
        """Every output of the extractor's one pass over a split: ``"features"`` ``(n, F)``
        and, for classifier extractors, ``"logits"``. Real splits of learned extractors are
        cached on disk, keyed by the dataset's and the weights' sha256."""
        def compute() -> dict[str, np.ndarray]:
            extractor = self.extractor
            if split == "samples" or not extractor.sha256:
                return extract_all(extractor, self._split_data(split))
            data = self._split_data(split)
            return cached_arrays(
                dataset=self.info.name, split=split, dataset_sha256=self.dataset.sha256,
                extractor=extractor.name, extractor_sha256=extractor.sha256, n=len(data),
                compute=lambda: extract_all(extractor, data))
        return self.memo(f"feature_pass/{split}", compute)

    def model_independent(self, key: str, compute: Callable[[], dict[str, np.ndarray]], *,
                          rows: int) -> dict[str, np.ndarray]:
        """Arrays that depend only on the dataset and the feature space, computed once per
        machine (cached beside the features, keyed by both hashes and verified by content)."""
        def load() -> dict[str, np.ndarray]:
            extractor = self.extractor
            if not extractor.sha256 and extractor.name not in ("pixels", "data"):
                return compute()
            return cached_arrays(
                dataset=self.info.name, split=key, dataset_sha256=self.dataset.sha256,
                extractor=extractor.name, extractor_sha256=extractor.sha256 or "none",
                n=rows, compute=compute)
        return self.memo(f"model-independent/{key}", load)

    def features(self, split: str) -> np.ndarray:
        """Features of ``"samples"``, ``"test"`` or ``"train"``, ``(n, F)`` float32, computed
        once per evaluation and shared by every sample metric."""
        return self.feature_pass(split)["features"]

    def logits(self, split: str) -> np.ndarray:
        """Class logits of a split from the same pass as :meth:`features`, ``(n, classes)``.

        Raises:
            MetricError: the feature extractor has no classifier head (e.g. pixels).
        """
        outputs = self.feature_pass(split)
        if "logits" not in outputs:
            raise MetricError(
                f"This metric needs class logits, but the feature extractor "
                f"'{self.extractor.name}' has none. Use --feature-extractor classifier or "
                "inception-v3-compat, or drop the metric from --metrics.")
        return outputs["logits"]

    def pixels(self, split: str) -> np.ndarray:
        """Flattened data of a split, ``(n, D)`` float32 (discrete values scaled to [0, 1])."""
        return self.memo(f"pixels/{split}",
                         lambda: PixelFeatures(self.info)(self._split_data(split)))


def select_metrics(requested: Sequence[str] | None, model: Model, dataset: Dataset
                   ) -> tuple[list[Metric], dict[str, str]]:
    """The metrics to run and, for the default selection, why the others are skipped.

    Explicitly requested metrics that cannot run raise :class:`MetricError`; in the default
    selection they are skipped with a reason.
    """
    chosen, skipped = [], {}
    for metric in [get_metric(k) for k in requested] if requested else METRICS.values():
        reason = (metric.wrong_kind(dataset) or metric.missing(model.capabilities)
                  or metric.applies(dataset))
        if reason and requested:
            raise MetricError(
                f"Metric '{metric.key}' was requested but cannot run: it {reason}, and "
                f"{model.source.path.name} on {dataset.info.name} does not provide that. "
                "Drop it from --metrics, or add the member to the model."
                if reason.startswith("needs") else
                f"Metric '{metric.key}' was requested but does not apply to "
                f"{dataset.info.name}: {reason}. Drop it from --metrics.")
        if reason:
            skipped[metric.key] = reason
        else:
            chosen.append(metric)
    return chosen, skipped


FLOAT16_MAX = 6.0e4  # features kept in float16 when every one lies within this (float16: 65504)


def per_example_values(ev: Evaluation) -> PerExample | None:
    """The run's per-example arrays that its metrics computed (``None`` if none): the
    likelihoods of the scored examples, the reconstruction errors, and the features of the
    first :data:`~gmbench.storage.per_example.MAX_FEATURES` samples (float16 where they fit:
    the gate's two-sample test rounds both runs alike)."""
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {"dataset_sha256": ev.dataset.sha256}
    if ev.computed("test_log_prob"):
        arrays["test_log_prob"] = np.asarray(ev.test_log_prob, np.float64)
    if ev.computed("train_log_prob"):
        arrays["train_log_prob"] = np.asarray(ev.train_log_prob, np.float64)
        arrays["train_index"] = np.asarray(ev.train_index, np.int64)
    if ev.computed("text/likelihood"):
        from gmbench.metrics.text import text_likelihood

        arrays["test_text_blocks"] = text_likelihood(ev).blocks.per_byte
    if ev.computed("test_squared_error"):
        arrays["test_squared_error"] = np.asarray(ev.memo("test_squared_error", lambda: None),
                                                  np.float64)
    if ev.computed("feature_pass/samples"):
        feats = np.asarray(ev.features("samples")[:MAX_FEATURES])
        if np.isfinite(feats).all():
            small = np.abs(feats).max(initial=0) < FLOAT16_MAX
            arrays["sample_features"] = feats.astype(np.float16 if small else np.float32)
            meta["feature_space"] = ev.feature_space
    return PerExample(arrays, meta) if arrays else None


def provenance(device: str, started: float) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    def installed(package: str) -> str | None:  # without importing it (torchvision is slow)
        try:
            return version(package)
        except PackageNotFoundError:
            return None

    record, digest = platform_id(device)
    return {
        "gmbench_version": __version__,
        "torch_version": record["torch"],
        "numpy_version": record["numpy"],
        "scipy_version": installed("scipy"),
        "torch_fidelity_version": installed("torch-fidelity"),
        "python": record["python"],
        "platform": platform.platform(),
        "device": record["device"],
        "started": datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds"),
        "duration_s": round(time.time() - started, 3),
        "command": " ".join(sys.argv),
        "platform_record": record,
        "platform_id": digest,
    }


def needs_samples(model: Model, dataset: Dataset, metrics: Sequence[str] | None) -> bool:
    """Whether any of the selected metrics may draw samples."""
    chosen, _ = select_metrics(metrics, model, dataset)
    return any(m.uses_samples for m in chosen)


def run_evaluation(model: Model, dataset: Dataset, config: RunRequest,
                   metrics: Sequence[str] | None = None, *, gathered: Gathered | None = None
                   ) -> Results:
    """Run the selected (default: every applicable) metric: the results with their artifacts.

    ``gathered``: the samples and their feature pass drawn by Ray shards
    (:func:`gmbench.run.shards.gather_samples`), used instead of drawing them here
    and recorded in the provenance.
    """
    started = time.time()
    chosen, skipped = select_metrics(metrics, model, dataset)
    ev = Evaluation(model, dataset, config)
    if metrics is None and any(m.needs_logits for m in chosen) \
            and not hasattr(ev.extractor, "logits_layer"):
        for metric in [m for m in chosen if m.needs_logits]:
            chosen.remove(metric)
            skipped[metric.key] = (f"needs class logits, which the feature extractor "
                                   f"'{ev.extractor.name}' does not have (inception-v3-compat "
                                   "and the bundled classifiers do)")
    ev.chosen = frozenset(m.key for m in chosen)
    if any(m.uses_samples for m in chosen):
        check_sample_budget(ev.n_samples, dataset)
    if gathered is not None:  # the samples and their features, drawn by the workers
        ev.memo("samples", lambda: gathered.samples)
        ev.memo("feature_pass/samples", lambda: gathered.features)
    results: dict[str, MetricRecord] = {}
    seconds: dict[str, float] = {}
    # Metrics with background work start it at their turn and run after all the others, so
    # that work overlaps theirs. Shared arrays are charged to the first metric that needs
    # them; a deferred metric to its start plus its wait.
    deferred = [m for m in chosen if m.prepare is not None]
    try:
        for metric in chosen:
            tic = time.perf_counter()
            with stage(metric.key):
                if metric.prepare is not None:
                    metric.prepare(ev)
                else:
                    results[metric.key] = metric.run(ev)
            seconds[metric.key] = time.perf_counter() - tic
            ev.work.poll()
        for metric in deferred:
            tic = time.perf_counter()
            with stage(metric.key):
                results[metric.key] = metric.run(ev)
            seconds[metric.key] += time.perf_counter() - tic
    finally:
        ev.work.close()
    results = {m.key: results[m.key] for m in chosen}
    seconds = {key: round(value, 3) for key, value in seconds.items()}
    uses_samples = ev.computed("samples")
    kept = per_example_values(ev)
    document = results_document(
        model=model.source.to_dict(), dataset=dataset.to_dict(), seed=config.seed,
        n_samples=ev.n_samples if uses_samples else None, metrics=results, skipped=skipped,
        config=config.config(),
        provenance={**provenance(config.device, started),
                    **({} if gathered is None else {"shards": gathered.shards,
                                                   "shard_seconds": round(gathered.seconds, 3)}),
                    **({} if model.isolation is None else {"isolation": model.isolation}),
                    "metric_seconds": seconds},
        per_example=kept)
    samples = ev.samples if uses_samples else None
    if samples is None and "sample" in model.capabilities and metrics is None:
        samples = model.sample(64, seed=config.seed)  # for the picture only
    pairs = next((r.artifacts["pairs"] for r in results.values() if "pairs" in r.artifacts),
                 None)
    neighbours = None
    if pairs is not None:
        neighbours = (ev.samples[pairs[0]], dataset.train.x[pairs[1]])
    if dataset.changed():
        forget_dataset(dataset)
        raise ModelError(
            f"{model.source.path.name}: the dataset {dataset.info.name} changed while the model "
            "ran: the model (or code it calls) wrote into the arrays gmbench shares with it "
            "(`gmbench.datasets.get_dataset(...).train.x`), so this run's numbers cannot be "
            "trusted and none were kept. Copy the arrays before changing them "
            "(`np.array(x, copy=True)`, `torch.tensor(x)`).")
    return Results(document, Artifacts(samples=samples, neighbours=neighbours), kept)
