"""The gated PixelCNN baseline: causal without a blind spot, an exactly normalized mass,
cached ancestral sampling equal to the naive one; and the resumable, budgeted training loop
it trains with (a run stopped by its budget and resumed equals one uninterrupted run)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from gmbench_baselines.pixelcnn import GatedPixelCNN
from gmbench_baselines.training import loop
from gmbench_baselines.training.fitting import TrainLog

from gmbench.errors import GmbenchError


def _random_net(shape=(1, 5, 6), levels=4, layers=3, kernel=3, seed=0) -> GatedPixelCNN:
    torch.manual_seed(seed)
    net = GatedPixelCNN(shape=shape, levels=levels, channels=8, layers=layers, kernel=kernel)
    with torch.no_grad():  # a non-trivial network: every weight random, none zero
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    return net.double().eval()


@pytest.mark.parametrize("kernel", [3, 5])
def test_each_logit_depends_on_exactly_the_pixels_before_it(kernel):
    """d logits(i, j) / d x(i', j') is nonzero exactly for the pixels before (i, j) in raster
    order, within the receptive field: none after (causal) and, for a deep enough net, every
    one before (no blind spot)."""
    rows, cols = 5, 6
    net = _random_net(shape=(1, rows, cols), layers=6, kernel=kernel)
    x = torch.rand(1, 1, rows, cols, dtype=torch.float64, requires_grad=True)
    for i, j in [(0, 0), (0, 3), (2, 0), (3, 4), (4, 5)]:
        out = net.logits(x * 3)[0, :, i, j].sum()  # levels 0..3 as floats: _scale is linear
        (grad,) = torch.autograd.grad(out, x)
        nonzero = grad[0, 0].abs() > 0
        before = torch.zeros(rows, cols, dtype=torch.bool)
        before.view(-1)[:i * cols + j] = True
        assert not (nonzero & ~before).any(), f"pixel ({i},{j}) sees the future"
        assert (nonzero == before).all(), f"pixel ({i},{j}) has a blind spot"


def test_the_mass_sums_to_one_over_every_image():
    net = _random_net(shape=(1, 2, 3), levels=3, layers=2)
    images = torch.tensor(list(itertools.product(range(3), repeat=6))).reshape(-1, 1, 2, 3)
    with torch.no_grad():
        total = torch.logsumexp(net.log_prob(images), 0)
    assert abs(float(total)) < 1e-10  # 729 images, probabilities summing to 1


@torch.no_grad()
def _sample_naive(net: GatedPixelCNN, n: int) -> torch.Tensor:
    """Ancestral sampling from one full forward pass per pixel: the reference."""
    x = torch.zeros(n, *net.shape)
    _, rows, cols = net.shape
    for i in range(rows):
        for j in range(cols):
            logits = net.logits(x)[:, :, i, j]
            x[:, 0, i, j] = torch.multinomial(torch.softmax(logits, dim=1), 1)[:, 0].float()
    return x.long()


def test_cached_sampling_draws_what_the_naive_loop_draws():
    net = _random_net().float()
    torch.manual_seed(7)
    fast = net.sample(16)
    torch.manual_seed(7)
    slow = _sample_naive(net, 16)
    assert torch.equal(fast, slow)
    assert fast.dtype == torch.long and fast.shape == (16, 1, 5, 6)
    assert int(fast.min()) >= 0 and int(fast.max()) <= 3


def test_samples_follow_the_model_distribution():
    """On a 1x2 image with 3 levels the 9 joint probabilities are known exactly; 20,000
    draws match them (chi-square, p > 0.001)."""
    from scipy.stats import chisquare
    net = _random_net(shape=(1, 1, 2), levels=3, layers=2).float()
    images = torch.tensor(list(itertools.product(range(3), repeat=2))).reshape(-1, 1, 1, 2)
    with torch.no_grad():
        probs = net.log_prob(images).double().exp().numpy()
    torch.manual_seed(3)
    draws = net.sample(20000).reshape(-1, 2).numpy()
    counts = np.bincount(draws[:, 0] * 3 + draws[:, 1], minlength=9)
    assert chisquare(counts, probs / probs.sum() * 20000).pvalue > 1e-3


# ------------------------------------------------------------------ the training loop
class _Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(4, 1)


def _train(tmp_path, monkeypatch, budget, seed=0, epochs=3):
    monkeypatch.setattr(loop, "CHECKPOINT_DIR", tmp_path)
    torch.manual_seed(0)
    model = _Tiny()
    data = torch.randn(100, 4)
    target = data @ torch.tensor([1.0, -2.0, 0.5, 3.0])

    def loss_of(batch, gen):
        noise = torch.randn(batch.shape, generator=gen) * 0.01  # the per-step noise stream
        rows = (batch[:, None] == data[None]).all(-1).float().argmax(1)
        return ((model.lin(batch + noise)[:, 0] - target[rows]) ** 2).mean()

    result = loop.train_resumable(model, loss_of, data, held_out=data[:20], family="tiny",
                                  dataset="d", seed=seed, epochs=epochs, batch_size=8, lr=0.05,
                                  log=TrainLog("tiny"), budget=budget)
    return model, result


def test_a_run_stopped_by_its_budget_and_resumed_equals_one_uninterrupted_run(
        tmp_path, monkeypatch):
    whole, whole_result = _train(tmp_path / "a", monkeypatch, loop.Budget())
    assert whole_result.complete and whole_result.epochs == 3
    steps = iter(range(10**6))
    clock = {"t": 0.0}

    def fake_monotonic():  # each call a tenth of a second later: the budget ends mid-epoch
        clock["t"] += 0.1 if next(steps) >= 0 else 0
        return clock["t"]

    monkeypatch.setattr(loop.time, "monotonic", fake_monotonic)
    _, first = _train(tmp_path / "b", monkeypatch, loop.Budget(seconds=2.0))
    assert not first.complete and 0 < first.epochs < 3
    assert first.curve[-1]["epoch"] == pytest.approx(first.epochs, abs=1e-4)
    monkeypatch.setattr(loop.time, "monotonic", lambda: clock["t"])  # frozen: no budget stop
    resumed, second = _train(tmp_path / "b", monkeypatch, loop.Budget(seconds=10.0))
    assert second.complete and second.epochs == 3 and second.sessions == 2
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # the curve has a point per epoch plus the budget stop
    assert [p["epoch"] for p in second.curve if p["epoch"] == int(p["epoch"])] == [1, 2, 3]
    assert math.isfinite(second.curve[-1]["held_out_loss"])


def test_a_checkpoint_of_another_run_is_refused(tmp_path, monkeypatch):
    _train(tmp_path, monkeypatch, loop.Budget())
    with pytest.raises(GmbenchError, match="differs in epochs"):
        _train(tmp_path, monkeypatch, loop.Budget(), epochs=4)
    _, fresh = _train(tmp_path, monkeypatch, loop.Budget(restart=True), epochs=4)
    assert fresh.sessions == 1 and fresh.complete


# ------------------------------------------------------------------ the multi-scale flow
def _random_flow(shape=(1, 4, 4)):
    from gmbench_baselines.multiscale import MultiScaleFlow
    torch.manual_seed(1)
    flow = MultiScaleFlow(shape=shape, hidden=8, steps=2, alpha=1e-4, seed=3)
    with torch.no_grad():  # leave the identity start: every conditioner and prior non-trivial
        for p in flow.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return flow.double()


def test_squeeze_is_inverted_by_unsqueeze():
    from gmbench_baselines.multiscale import squeeze, unsqueeze
    x = torch.arange(2 * 3 * 4 * 6).reshape(2, 3, 4, 6)
    assert squeeze(x).shape == (2, 12, 2, 3)
    assert torch.equal(unsqueeze(squeeze(x)), x)
    assert squeeze(x)[0, :4, 0, 0].tolist() == [x[0, 0, 0, 0], x[0, 0, 0, 1], x[0, 0, 1, 0],
                                                x[0, 0, 1, 1]]


def test_multiscale_flow_density_is_the_change_of_variables():
    """log p(y) equals log N(u) + log |det du/dy| with the Jacobian of the whole map y -> u
    (u: the split-off half standardized by its prior, and the last scale's output) taken by
    autograd, in float64."""
    from gmbench_baselines.densities import logit_transform
    from gmbench_baselines.multiscale import squeeze
    flow = _random_flow()

    def u_of(y_flat: torch.Tensor) -> torch.Tensor:
        v, _ = logit_transform(y_flat[None], alpha=flow.alpha)
        h, _ = flow.scale1(squeeze(v.reshape(1, *flow.shape)))
        keep, out = h.chunk(2, dim=1)
        mean, log_std = flow.split_prior(keep).chunk(2, dim=1)
        h2, _ = flow.scale2(squeeze(keep))
        return torch.cat([((out - mean) * torch.exp(-log_std)).flatten(), h2.flatten()])

    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        y = torch.rand(16, generator=gen, dtype=torch.float64) * 0.98 + 0.01
        jac = torch.autograd.functional.jacobian(u_of, y)
        u = u_of(y)
        expected = (-0.5 * (u ** 2 + math.log(2 * math.pi))).sum() + torch.linalg.slogdet(jac)[1]
        with torch.no_grad():
            got = flow._forward(y.reshape(1, 1, 4, 4))
        assert float(got) == pytest.approx(float(expected), abs=1e-6)


def test_multiscale_flow_steps_invert():
    flow = _random_flow(shape=(1, 8, 8))
    x = torch.randn(5, 4, 4, 4, dtype=torch.float64)
    with torch.no_grad():
        y, _ = flow.scale1(x)
        torch.testing.assert_close(flow.scale1.inverse(y), x)
        s = flow.sample(6)
    assert s.shape == (6, 1, 8, 8) and float(s.min()) >= 0 and float(s.max()) <= 1
