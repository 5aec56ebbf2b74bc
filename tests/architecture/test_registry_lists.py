"""Metric lists kept outside the registry (what ``gmbench baselines`` shows, the report's
Pareto pairs, the memorization verdict) name registered metrics, so a renamed or removed
metric cannot leave a column or a plot silently empty."""

from __future__ import annotations

import inspect
import re

import pytest

from gmbench.metrics import METRICS
from gmbench.present import verdicts
from gmbench.present.baseline_list import HEADLINE_METRICS
from gmbench.present.report import PARETO_PAIRS


@pytest.mark.parametrize(("name", "keys"), [
    ("HEADLINE_METRICS", HEADLINE_METRICS),
    ("PARETO_PAIRS", [k for pair in PARETO_PAIRS for k in pair]),
    ("memorization_line", re.findall(r'get\("(\w+)"\)', inspect.getsource(
        verdicts.memorization_line))),
])
def test_every_listed_metric_is_registered(name, keys):
    assert keys, name
    assert not [k for k in keys if k not in METRICS], name


def test_pareto_pairs_are_two_different_metrics_each():
    assert all(len(set(pair)) == 2 for pair in PARETO_PAIRS)
