"""Flows from the libraries researchers already use work unchanged (the contract's section 2):
a zuko flow's distribution (a ``torch.distributions.Distribution``), an nflows ``Flow`` and a
normflows ``NormalizingFlow`` (``nn.Module``s; normflows' ``sample`` returns ``(z, log_q)``).
Each is checked against the library's own ``log_prob`` on the same test points, and its
samples against the library's own ``sample`` under the same seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import gmbench
from gmbench.core.rng import child_seed, forked_rng
from gmbench.datasets import get_dataset

DATASET = "toy2d-gmm8"


def _zuko():
    zuko = pytest.importorskip("zuko")
    torch.manual_seed(0)
    return zuko.flows.MAF(features=2, transforms=2, hidden_features=(16,))()


def _nflows():
    pytest.importorskip("nflows")
    from nflows.distributions.normal import StandardNormal
    from nflows.flows.base import Flow
    from nflows.transforms.autoregressive import MaskedAffineAutoregressiveTransform
    from nflows.transforms.base import CompositeTransform
    from nflows.transforms.permutations import ReversePermutation

    torch.manual_seed(0)
    transform = CompositeTransform([
        MaskedAffineAutoregressiveTransform(features=2, hidden_features=16),
        ReversePermutation(features=2),
        MaskedAffineAutoregressiveTransform(features=2, hidden_features=16),
    ])
    return Flow(transform, StandardNormal([2])).eval()


def _normflows():
    nf = pytest.importorskip("normflows")
    torch.manual_seed(0)
    flows = [nf.flows.MaskedAffineAutoregressive(2, 16), nf.flows.Permute(2, mode="swap"),
             nf.flows.MaskedAffineAutoregressive(2, 16)]
    return nf.NormalizingFlow(nf.distributions.DiagGaussian(2), flows).eval()


LIBRARIES = {"zuko": _zuko, "nflows": _nflows, "normflows": _normflows}


@pytest.mark.parametrize("library", list(LIBRARIES))
def test_nll_is_the_librarys_own_log_prob(library: str) -> None:
    flow = LIBRARIES[library]()
    results = gmbench.evaluate(flow, dataset=DATASET, metrics=["nll"], progress=False)
    x = torch.as_tensor(get_dataset(DATASET).test.x, dtype=torch.float32)
    with torch.no_grad():
        expected = float(-flow.log_prob(x).double().mean())
    assert results["nll"].kind == "exact"
    assert results["nll"].value == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("library", list(LIBRARIES))
def test_samples_are_the_librarys_own(library: str) -> None:
    """gmbench draws the first block of samples inside an RNG state seeded from
    ``(seed, "sample", 0)``; the library's own ``sample`` under that state gives the same
    points, so nothing was reshaped, reordered or mixed with ``log_q``."""
    from gmbench.models.model import Model, ModelSource

    flow = LIBRARIES[library]()
    info = get_dataset(DATASET).info
    source = ModelSource(path=Path(library), name=library, sha256="0" * 64, dataset=None)
    model = Model(flow, source=source, info=info, device="cpu")
    got = model.sample(64, seed=3)
    with forked_rng(child_seed(3, "sample", 0)), torch.no_grad():
        out = flow.sample(torch.Size([64])) if library == "zuko" else flow.sample(64)
    expected = (out[0] if isinstance(out, tuple) else out).numpy()
    np.testing.assert_array_equal(got, expected.astype(np.float32))


def test_a_pair_that_is_not_samples_and_log_densities_is_refused() -> None:
    """Only the exact ``(z (n, *shape), log_q (n,))`` form is unpacked; any other pair gets the
    shape error, not a silent pick of one element."""

    class Pair:
        def sample(self, n: int):
            return torch.zeros(n, 2), torch.zeros(n, 2)

    with pytest.raises(gmbench.GmbenchError, match="returned a tuple|shape"):
        gmbench.evaluate(Pair(), dataset=DATASET, metrics=["mmd"], n_samples=100,
                         progress=False)
