"""The bundled baseline families (the ``gmbench_baselines`` package of the source tree), and
the datasets each is bundled for."""

from __future__ import annotations

__all__ = ["bundled_datasets", "bundled_families", "families"]


def families() -> dict[str, tuple[tuple[str, ...], str]]:
    """Bundled baselines: name -> (datasets, description); empty without the package."""
    try:
        from gmbench_baselines import BASELINES
    except ImportError:  # gmbench installed without its baselines
        return {}
    return {b.name: (b.datasets, b.description) for b in BASELINES.values()}


def bundled_families(dataset: str | None = None) -> list[str]:
    """The bundled baseline families, of ``dataset`` or of every dataset."""
    return [f for f, (ds, _) in families().items() if dataset is None or dataset in ds]


def bundled_datasets() -> list[str]:
    """Every dataset some baseline is bundled for, in first-seen order."""
    seen: dict[str, None] = {}
    for datasets, _ in families().values():
        seen.update(dict.fromkeys(datasets))
    return list(seen)
