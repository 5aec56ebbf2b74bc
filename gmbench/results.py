"""The typed result schema of SPEC section 6: one metric's record, and one run's file."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gmbench.errors import BoardError
from gmbench.files import atomic_write
from gmbench.stats import Estimate

__all__ = ["SCHEMA_VERSION", "MetricResult", "RunResult", "neutralise", "read_results"]

SCHEMA_VERSION = 1
CORE_FIELDS = ("value", "stderr", "ci_low", "ci_high", "ci_method", "n", "unit",
               "higher_is_better", "kind", "feature_space")
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")  # spreadsheet formula starts


def neutralise(text: str) -> str:
    """Prefix ``'`` to a cell a spreadsheet would evaluate as a formula (idempotent)."""
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def _clean(x: Any) -> Any:
    """JSON-safe: NaN and infinities become ``null``; numpy scalars become Python numbers."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


@dataclass(frozen=True)
class MetricResult:
    """One metric's value with its uncertainty, unit, direction and provenance.

    ``details`` holds metric-specific fields (e.g. ``dequant_samples``, ``labels``); they are
    written beside the core fields in ``results.json``.
    """

    key: str
    estimate: Estimate
    unit: str
    higher_is_better: bool
    feature_space: str
    kind: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def value(self) -> float:
        return self.estimate.value

    def to_dict(self) -> dict[str, Any]:
        e = self.estimate
        core = {"value": e.value, "stderr": e.stderr, "ci_low": e.ci_low, "ci_high": e.ci_high,
                "ci_method": e.ci_method, "n": e.n, "unit": self.unit,
                "higher_is_better": self.higher_is_better, "kind": self.kind,
                "feature_space": self.feature_space}
        clash = set(core) & set(self.details)
        assert not clash, f"details may not override core fields: {clash}"
        return _clean({**core, **self.details})


@dataclass
class RunResult:
    """Everything one ``gmbench evaluate`` produced (the ``results.json`` schema)."""

    model: dict[str, str]
    dataset: dict[str, Any]
    seed: int
    n_samples: int | None
    metrics: dict[str, MetricResult]
    skipped: dict[str, str]
    provenance: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _clean({
            "schema_version": SCHEMA_VERSION,
            "model": self.model,
            "dataset": self.dataset,
            "seed": self.seed,
            "n_samples": self.n_samples,
            "metrics": {k: m.to_dict() for k, m in self.metrics.items()},
            "skipped": self.skipped,
            "config": self.config,
            "provenance": self.provenance,
        })

    def write_json(self, path: str | Path) -> None:
        with atomic_write(path) as handle:
            json.dump(self.to_dict(), handle, indent=2, allow_nan=False)
            handle.write("\n")

    def write_csv(self, path: str | Path) -> None:
        data = self.to_dict()
        columns = ["model", "dataset", "metric", *CORE_FIELDS, "seed", "n_samples",
                   "model_sha256", "dataset_sha256"]
        with atomic_write(path) as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            for key, rec in data["metrics"].items():
                writer.writerow([neutralise(data["model"]["name"]), data["dataset"]["name"], key,
                                 *[rec.get(c) for c in CORE_FIELDS], data["seed"],
                                 data["n_samples"], data["model"]["sha256"],
                                 data["dataset"]["sha256"]])


def read_results(path: str | Path) -> dict[str, Any]:
    """Read and check a ``results.json``; a clear :class:`BoardError` if it is not one."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise BoardError(f"{path} does not exist; pass a results.json written by "
                         "`gmbench evaluate --out DIR`.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BoardError(f"{path} is not valid JSON ({exc}); it may be truncated. Re-run "
                         "`gmbench evaluate` to regenerate it.") from None
    missing = [k for k in ("schema_version", "model", "dataset", "metrics", "provenance")
               if not isinstance(data, dict) or k not in data]
    if missing:
        raise BoardError(f"{path} is not a gmbench results file (missing {', '.join(missing)}).")
    if data["schema_version"] != SCHEMA_VERSION:
        raise BoardError(f"{path} has schema_version {data['schema_version']}; this gmbench "
                         f"reads version {SCHEMA_VERSION}. Re-run `gmbench evaluate`.")
    for key, rec in data["metrics"].items():
        if not isinstance(rec, dict) or "value" not in rec or "higher_is_better" not in rec:
            raise BoardError(f"{path}: metric '{key}' lacks a value or direction; the file is "
                             "damaged. Re-run `gmbench evaluate`.")
    return data
