"""A regression test for your own model, in your own test suite (run it with ``pytest``).

The reference board was recorded once, from the model as it was when it was good:

    gmbench evaluate examples/minimal_model.py --seed 0 --metrics nll,bits_per_dim,fid,precision,recall,coverage,mmd --out ref
    gmbench leaderboard add ref/results.json --board examples/minimal_model-digits.csv

(``leaderboard add`` keeps the run's per-example values beside the board, in
``examples/minimal_model-digits.per-example/``: commit that folder with the board.) The test
re-evaluates the model at another seed and fails, with the table of verdicts, when a metric got
worse by more than the two runs' noise (per-example differences for the likelihoods; Holm's
procedure over the metrics, so an unchanged model fails at most 5% of seeds).
"""

from pathlib import Path

import gmbench
from gmbench.testing import assert_no_regression

HERE = Path(__file__).parent
METRICS = ["nll", "bits_per_dim", "fid", "precision", "recall", "coverage", "mmd"]


def test_minimal_model_has_not_regressed():
    results = gmbench.evaluate(HERE / "minimal_model.py", dataset="digits", metrics=METRICS,
                               seed=1, progress=False)
    assert_no_regression(results, board=HERE / "minimal_model-digits.csv",
                         model="minimal_model")
