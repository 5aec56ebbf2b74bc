"""The typed result schema (``docs/CONTRACT.md``, section 6): one metric's record, and one
run's file."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, NoReturn

from gmbench.core.errors import BoardError
from gmbench.core.files import NotARegularFile, TooLarge, read_bounded
from gmbench.core.rng import MAX_SEED
from gmbench.estimators.uncertainty import Estimate
from gmbench.storage.per_example import PerExample

__all__ = ["READABLE_SCHEMAS", "SCHEMA_VERSION", "MetricRecord", "neutralise", "read_results",
           "record_problem", "records", "results_csv", "results_document", "validate_results"]

SCHEMA_VERSION = 2
MAX_RESULTS_BYTES = 64 << 20  # a results.json is kilobytes; refuse what cannot be one
READABLE_SCHEMAS = (1, 2)  # version 1: gmbench 0.1 (no protocol, ideal or weights fields)
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
class MetricRecord:
    """One metric's value with its uncertainty, unit, direction and provenance: what a metric
    measured, what ``results.json`` holds, and what every reader gets back.

    ``details`` holds the metric's own fields (estimator, sample sizes, notes, e.g.
    ``dequant_samples``, ``labels``); they are written beside the core fields in
    ``results.json``. ``artifacts`` holds what the metric made for the run's pictures
    (``"pairs"``: the memorization metrics' sample and training indices of the nearest
    pairs); it is not written to ``results.json``.
    """

    key: str
    value: float | None
    stderr: float | None
    ci_low: float | None
    ci_high: float | None
    ci_method: str
    n: int | None
    unit: str
    higher_is_better: bool
    ideal: float | None
    protocol: int
    kind: str | None
    feature_space: str
    details: Mapping[str, Any] = field(default_factory=dict)
    artifacts: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def measured(cls, key: str, estimate: Estimate, *, unit: str, higher_is_better: bool,
                 feature_space: str, kind: str | None = None, ideal: float | None = None,
                 protocol: int = 1, details: Mapping[str, Any] | None = None,
                 artifacts: dict[str, Any] | None = None) -> MetricRecord:
        """The record of a metric's :class:`~gmbench.estimators.uncertainty.Estimate`."""
        e = estimate
        return cls(key=key, value=e.value, stderr=e.stderr, ci_low=e.ci_low,
                   ci_high=e.ci_high, ci_method=e.ci_method, n=e.n, unit=unit,
                   higher_is_better=higher_is_better, ideal=ideal, protocol=protocol,
                   kind=kind, feature_space=feature_space, details=dict(details or {}),
                   artifacts=dict(artifacts or {}))

    @classmethod
    def from_dict(cls, key: str, rec: Mapping[str, Any]) -> MetricRecord:
        """A record of ``results.json`` (validated by :func:`validate_results`)."""
        core: dict[str, Any] = {f: rec.get(f) for f in CORE_FIELDS}
        core.update({f: _finite(core[f]) for f in ("value", "stderr", "ci_low", "ci_high")},
                    ci_method=str(core["ci_method"] or ""), unit=str(core["unit"] or ""),
                    higher_is_better=bool(core["higher_is_better"]),
                    protocol=int(core["protocol"] or 1),
                    feature_space=str(core["feature_space"] or ""))
        return cls(key=key, **core, details={k: v for k, v in rec.items()
                                             if k not in CORE_FIELDS})

    @property
    def estimate(self) -> Estimate:
        nan = math.nan
        return Estimate(value=nan if self.value is None else self.value,
                        stderr=nan if self.stderr is None else self.stderr,
                        ci_low=nan if self.ci_low is None else self.ci_low,
                        ci_high=nan if self.ci_high is None else self.ci_high,
                        ci_method=self.ci_method, n=self.n or 0)

    @property
    def not_estimable(self) -> str | None:
        """Why the value could not be estimated on this run, or ``None``."""
        reason = self.details.get("not_estimable")
        return str(reason) if reason else None

    @property
    def interval_covers(self) -> str | None:
        """What its 95% interval covers (``"population"``, ``"runs"``, ``"bound"``)."""
        return self.details.get("interval_covers")

    @property
    def n_samples(self) -> int | None:
        """The samples it used, where it uses samples."""
        return self.details.get("n_samples")

    def detail(self, name: str, default: Any = None) -> Any:
        """One of the metric's own fields."""
        return self.details.get(name, default)

    def to_dict(self) -> dict[str, Any]:
        core = {f: getattr(self, f) for f in CORE_FIELDS}
        clash = set(core) & set(self.details)
        assert not clash, f"details may not override core fields: {clash}"
        return _clean({**core, **self.details})


# a record's own fields, in results.json and on boards: all but its key, details and artifacts
CORE_FIELDS = tuple(f.name for f in fields(MetricRecord))[1:-2]


def records(document: Mapping[str, Any]) -> dict[str, MetricRecord]:
    """The metric records of a ``results.json`` document (validated), typed."""
    return {k: MetricRecord.from_dict(k, rec) for k, rec in document["metrics"].items()}


def _finite(x: Any) -> float | None:
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x


def results_document(*, model: Mapping[str, Any], dataset: Mapping[str, Any], seed: int,
                     n_samples: int | None, metrics: Mapping[str, MetricRecord],
                     skipped: Mapping[str, str], config: Mapping[str, Any],
                     provenance: Mapping[str, Any], per_example: PerExample | None = None
                     ) -> dict[str, Any]:
    """Everything one evaluation produced, as ``results.json`` holds it and JSON reads it back
    (schema :data:`SCHEMA_VERSION`)."""
    extra = {} if per_example is None else {"per_example": per_example.describe()}
    doc = _clean({"schema_version": SCHEMA_VERSION, "model": model, "dataset": dataset,
                  "seed": seed, "n_samples": n_samples,
                  "metrics": {k: m.to_dict() for k, m in metrics.items()}, "skipped": skipped,
                  "config": config, "provenance": provenance, **extra})
    return json.loads(json.dumps(doc, allow_nan=False))


def results_csv(data: dict[str, Any]) -> bytes:
    """The ``results.csv`` of a ``results.json`` document: one row per metric."""
    columns = ["model", "dataset", "metric", *CORE_FIELDS, "seed", "n_samples",
               "model_sha256", "weights_sha256", "dataset_sha256"]
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for key, rec in data["metrics"].items():
        row = [data["model"]["name"], data["dataset"]["name"], key,
               *[rec.get(c) for c in CORE_FIELDS], data["seed"], data["n_samples"],
               data["model"]["sha256"], data["model"].get("weights_sha256"),
               data["dataset"]["sha256"]]
        # every text cell: a dataset named after a formula is as dangerous as a model
        writer.writerow([neutralise(v) if isinstance(v, str) else v for v in row])
    return buffer.getvalue().encode()


# ------------------------------------------------------------------ reading, validating
_TEXT, _NUMBER, _INTEGER, _BOOL = "a string", "a finite number", "an integer", "true or false"
# the type of each field gmbench writes: (kind, whether it may be null or absent)
_DOCUMENT = {"seed": (_INTEGER, False), "n_samples": (_INTEGER, True)}
_MODEL = {"name": (_TEXT, False), "sha256": (_TEXT, False), "weights_sha256": (_TEXT, True),
          "reference": (_TEXT, True)}
_DATASET = {"name": (_TEXT, False), "sha256": (_TEXT, False)}
_PROVENANCE = {"started": (_TEXT, True), "gmbench_version": (_TEXT, True)}
_METRIC = {**{f: (_NUMBER, True) for f in ("value", "stderr", "ci_low", "ci_high", "ideal")},
           "n": (_INTEGER, True), "higher_is_better": (_BOOL, False),
           **{f: (_TEXT, True) for f in ("unit", "ci_method", "feature_space", "kind")},
           "protocol": (_INTEGER, False)}


def _type_name(x: Any) -> str:
    return "null" if x is None else type(x).__name__


def _is(kind: str, value: Any) -> bool:
    if kind == _TEXT:
        return isinstance(value, str)
    if kind == _BOOL or isinstance(value, bool):
        return kind == _BOOL and isinstance(value, bool)
    if kind == _INTEGER:
        return isinstance(value, int)
    return isinstance(value, (int, float)) and math.isfinite(value)


def _fail(where: str, field: str, why: str) -> NoReturn:
    raise BoardError(f"{where}: field '{field}' {why}. The file is damaged or was edited by "
                     "hand; re-run `gmbench evaluate` to regenerate it.")


def _checked(data: Any, field: str, types: Mapping[str, tuple[str, bool]], where: str, *,
             possible: bool = False) -> dict[str, Any]:
    """``data`` (an object) whose fields of ``types`` have their types (``possible``: and
    values gmbench can write, :func:`record_problem`)."""
    if not isinstance(data, dict):
        _fail(where, field, f"must be an object, got {_type_name(data)}")
    for key, (kind, optional) in types.items():
        value = data.get(key)
        if not (value is None and optional) and not _is(kind, value):
            _fail(where, f"{field}.{key}".removeprefix("."),
                  f"must be {kind}{' or null' if optional else ''}, got {_type_name(value)} "
                  f"{value!r}")
    problem = record_problem(data) if possible else None
    if problem:
        _fail(where, field or "(document)", problem)
    return data


def record_problem(v: Mapping[str, Any]) -> str | None:
    """What makes a metric record or board row impossible (a value gmbench never writes), or
    ``None``: one rule for results files and boards. Types are checked before."""
    for column in ("n", "n_samples"):
        if v.get(column) is not None and v[column] < (1 if column == "n_samples" else 0):
            return f"'{column}' holds {v[column]}, which cannot be a count"
    if v.get("stderr") is not None and v["stderr"] < 0:
        return f"'stderr' is negative ({v['stderr']!r})"
    if v.get("ci_low") is not None and v.get("ci_high") is not None \
            and v["ci_low"] > v["ci_high"]:
        return f"ci_low ({v['ci_low']!r}) exceeds ci_high ({v['ci_high']!r})"
    if v.get("value") is not None and v.get("ci_low") is not None \
            and v.get("ci_high") is not None:
        slack = 1e-9 * max(abs(v["value"]), abs(v["ci_low"]), abs(v["ci_high"]), 1e-300)
        if not v["ci_low"] - slack <= v["value"] <= v["ci_high"] + slack:
            return (f"the value {v['value']!r} lies outside its own 95% interval "
                    f"[{v['ci_low']!r}, {v['ci_high']!r}]")
    if not 0 <= v.get("seed", 0) <= MAX_SEED:
        return f"'seed' holds {v['seed']}, outside [0, 2**63 - 1]"
    if v.get("protocol", 1) < 1:
        return f"'protocol' holds {v['protocol']}; protocols start at 1"
    if v.get("ideal") is not None and v.get("higher_is_better"):
        return ("'ideal' is set on a higher-is-better metric (a metric with an ideal is judged "
                "by its distance from it)")
    return None


def validate_results(data: Any, *, where: str) -> dict[str, Any]:
    """Check a parsed ``results.json`` (schema 1 or 2) field by field and return it as schema
    2 (a version-1 document gains ``protocol`` 1 and ``ideal`` null on every metric and null
    weights fields).

    Raises:
        BoardError: naming the file, the field and what is wrong with it.
    """
    doc = _checked(data, "(document)", {}, where)
    missing = [k for k in ("schema_version", "model", "dataset", "metrics", "provenance")
               if k not in doc]
    if missing:
        raise BoardError(f"{where} is not a gmbench results file (missing "
                         f"{', '.join(missing)}). Pass a results.json written by `gmbench "
                         "evaluate`.")
    version = doc["schema_version"]
    if version not in READABLE_SCHEMAS or isinstance(version, bool):
        raise BoardError(f"{where} has schema_version {version!r}; this gmbench reads versions "
                         f"{', '.join(map(str, READABLE_SCHEMAS))}. Upgrade gmbench, or re-run "
                         "`gmbench evaluate`.")
    _checked({k: doc.get(k) for k in _DOCUMENT}, "", _DOCUMENT, where, possible=True)
    for name, types in (("model", _MODEL), ("dataset", _DATASET), ("provenance", _PROVENANCE)):
        _checked(doc[name], name, types, where)
    out = {**doc, "metrics": {}}
    for key, rec in _checked(doc["metrics"], "metrics", {}, where).items():
        rec = dict(_checked(rec, f"metrics.{key}", {}, where))
        if version == 1:
            rec.setdefault("protocol", 1)
            rec.setdefault("ideal", None)
        out["metrics"][key] = _checked(rec, f"metrics.{key}", _METRIC, where, possible=True)
    if version == 1:
        out["model"] = {**doc["model"], "weights_sha256": None, "weights_source": None}
        out["schema_version"] = SCHEMA_VERSION
    return out


def read_results(path: str | Path) -> dict[str, Any]:
    """Read and validate a ``results.json`` (schema 1 or 2, returned as schema 2)."""
    p = Path(path)
    try:
        raw = read_bounded(p, MAX_RESULTS_BYTES)
    except (NotARegularFile, TooLarge) as exc:
        raise BoardError(f"{exc}; pass a results.json written by `gmbench evaluate`.") from None
    except FileNotFoundError:
        raise BoardError(f"{path} does not exist; pass a results.json written by "
                         "`gmbench evaluate --out DIR`.") from None
    except IsADirectoryError:
        raise BoardError(f"{path} is a directory; pass the results.json inside it.") from None
    except PermissionError:
        raise BoardError(f"{path} cannot be read (permission denied).") from None
    try:
        data = json.loads(raw.decode("utf-8-sig"))  # a BOM an editor added is not content
    except RecursionError:
        raise BoardError(f"{path} nests JSON too deeply to be a results file; pass a "
                         "results.json written by `gmbench evaluate`.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BoardError(f"{path} is not valid JSON ({exc}); it may be truncated. Re-run "
                         "`gmbench evaluate` to regenerate it.") from None
    return validate_results(data, where=str(path))
