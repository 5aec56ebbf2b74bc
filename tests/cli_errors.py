"""The shape every refusal of the command line must have (issue 12): the expected exit status,
a ``gmbench: error:`` paragraph on stderr, no traceback anywhere, and each needle named."""

from __future__ import annotations

from typing import Any


def assert_clear_error(run: Any, *needles: str, code: int = 2) -> None:
    assert run.code == code, (run.code, run.out, run.err)
    assert "gmbench: error:" in run.err and "Traceback" not in run.err + run.out, run.err
    for needle in needles:
        assert needle in run.err, (needle, run.err)
