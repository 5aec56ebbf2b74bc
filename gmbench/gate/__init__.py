"""The regression gate (``gmbench check``): a run judged against a model's reference rows on
a board, with the tests of :mod:`gmbench.estimators.hypothesis`."""
