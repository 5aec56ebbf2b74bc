"""reconstruction_error against closed forms."""

from __future__ import annotations

import numpy as np
import pytest

from gmbench.datasets import get_dataset

IDENTITY = """
    DATASET = "digits"

    class Identity:
        def sample(self, n):
            import torch
            return torch.zeros(n, 1, 8, 8, dtype=torch.long)

        def encode(self, x):
            return x

        def decode(self, z):
            return z

    model = Identity()
"""

BLANK = IDENTITY.replace("return z", "return z * 0")


def test_identity_autoencoder_has_zero_error(write_model, gmbench_cli):
    run = gmbench_cli("evaluate", write_model(IDENTITY), "--metrics", "reconstruction_error")
    assert run.code == 0, run.err
    rec = run.metric("reconstruction_error")
    assert rec["value"] == 0 and rec["n"] == len(get_dataset("digits").test)


def test_blank_decoder_error_is_the_mean_square(write_model, gmbench_cli):
    run = gmbench_cli("evaluate", write_model(BLANK), "--metrics", "reconstruction_error")
    assert run.code == 0, run.err
    x = get_dataset("digits").test.x.reshape(-1, 64).astype(np.float64) / 16
    per_example = (x ** 2).mean(1)
    rec = run.metric("reconstruction_error")
    assert rec["value"] == pytest.approx(per_example.mean(), rel=1e-12)
    assert rec["stderr"] == pytest.approx(per_example.std(ddof=1) / np.sqrt(len(x)), rel=1e-9)
    assert rec["higher_is_better"] is False
