"""Paths, model sources and small helpers shared by the reliability tests: the repository's
example model and stored results, a toy Gaussian model file to fill in, and the ways the tests
run and edit a ``gmbench check``."""

from __future__ import annotations

import json
from pathlib import Path

from gmbench.cli import main

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = ROOT / "examples" / "minimal_model.py"
V01 = ROOT / "tests" / "data" / "v0.1"
LEVELS = "torch.randint(0, 17, (n, 1, 8, 8))"


def evaluate_ok(gmbench_cli, path, *args):
    run = gmbench_cli("evaluate", path, *args)
    assert run.code == 0, run.err
    return run


TOY = """
    import torch
    DATASET = "gauss-2"
    class M:
        def sample(self, n):
            return {sample}
        def log_prob(self, x):
            return {log_prob}
    model = M()
"""
GOOD_SAMPLE = "torch.randn(n, 2)"
GOOD_LP = "torch.distributions.Normal(0., 1.).log_prob(x).sum(1)"


def toy(*lines: str) -> str:
    """The good toy model with extra module-level lines (``NAME = ...``)."""
    return TOY.format(sample=GOOD_SAMPLE, log_prob=GOOD_LP) + "".join(
        f"    {line}\n" for line in lines)


# ------------------------------------------------------------------ editing and checking a gate
def _edited(gate: dict[str, Path], name: str, edit) -> Path:  # noqa: ANN001 - a callable
    data = json.loads(gate["results"].read_text())
    edit(data)
    path = gate["root"] / name
    path.write_text(json.dumps(data))
    return path


def _check(capsys, results: Path, board: Path, *extra: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["check", str(results), "--against", str(board), "--model", "indep", *extra])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def assert_clear_error_text(code: int, out: str, *needles: str) -> None:
    assert code == 2 and "gmbench: error:" in out and "Traceback" not in out, out
    for needle in needles:
        assert needle in out, (needle, out)


HOOKED = '''
import numpy as np
import torch
from gmbench.datasets import get_dataset

class Model:
    def __init__(self, info):
        self.info = info
    def sample(self, n):
        SAMPLE_HOOK
        return torch.randint(0, self.info.levels, (n, *self.info.shape))
    def log_prob(self, x):
        return torch.full((len(x),), -float(np.prod(self.info.shape)) * np.log(self.info.levels))

def load(dataset, device):
    LOAD_HOOK
    return Model(dataset)
'''


def hooked_model(folder: Path, *, load: str = "pass", sample: str = "pass",
                 name: str = "hostile.py") -> Path:
    """A model file for discrete images (uniform samples and log-mass) with code inserted at
    the start of ``load`` and of ``sample`` (further lines indented by four spaces)."""
    import textwrap

    body = textwrap.dedent(HOOKED).replace("SAMPLE_HOOK", sample).replace("LOAD_HOOK", load)
    path = folder / name
    path.write_text(body)
    return path
