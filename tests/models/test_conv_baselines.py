"""The convolutional VAE, autoencoder and GAN baselines (issue 16): the VAE's decoder is a
normalized mass over every image and its samples follow it; the spectrally normalized GAN,
trained by the resumable loop with its own alternating update, resumes bit for bit; the
averaged generator's batch-norm statistics are those of its own draws."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gmbench_baselines.densities import (
    discretized_logistic_log_mass,
    discretized_logistic_mixture_log_mass,
)
from gmbench_baselines.training import loop
from scipy.stats import chisquare

from gmbench.datasets import get_dataset


@pytest.mark.parametrize("levels", [2, 17, 256])
def test_a_mixture_of_discretized_logistics_is_the_weighted_sum_of_its_masses(levels):
    gen = torch.Generator().manual_seed(levels)
    k = 3
    logits = torch.randn(5, k, 1, generator=gen).expand(5, k, levels)
    mean = torch.randn(5, k, 1, generator=gen).clamp(-1.2, 1.2).expand(5, k, levels)
    log_scale = (torch.randn(5, k, 1, generator=gen) - 2).expand(5, k, levels)
    x = torch.arange(levels).expand(5, levels)
    mixed = discretized_logistic_mixture_log_mass(x, logits, mean, log_scale, levels=levels)
    weights = torch.softmax(logits, dim=1)
    direct = sum(weights[:, j] * discretized_logistic_log_mass(x, mean[:, j], log_scale[:, j],
                                                               levels=levels).exp()
                 for j in range(k))
    torch.testing.assert_close(mixed.exp(), direct, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(mixed.exp().sum(-1), torch.ones(5), rtol=0, atol=2e-3)


def _random_vae(levels: int, seed: int = 0):
    from gmbench_baselines.vae import VAE

    torch.manual_seed(seed)
    vae = VAE(shape=(1, 4, 4), levels=levels, width=4, latent=2, mixture=2).double()
    for p in vae.parameters():  # away from the near-zero start: sharp, unequal components
        torch.nn.init.normal_(p, std=0.5)
    return vae.eval()


def test_vae_decoder_mass_sums_to_one_over_every_image():
    vae = _random_vae(levels=2)
    every = torch.cartesian_prod(*[torch.arange(2)] * 16).reshape(-1, 1, 4, 4)  # 65,536
    for z in torch.randn(3, 1, 2, dtype=torch.float64):
        with torch.no_grad():
            log_p = vae.log_likelihood(every.reshape(len(every), -1), z.expand(len(every), 2))
        assert float(torch.logsumexp(log_p, 0)) == pytest.approx(0.0, abs=1e-9)


def test_vae_samples_follow_the_decoder_mass():
    levels, n = 4, 20000
    vae = _random_vae(levels=levels, seed=1)
    z = torch.randn(1, 2, dtype=torch.float64)
    torch.manual_seed(2)
    with torch.no_grad():
        draws = vae.sample_given(z.expand(n, 2)).reshape(n, -1).numpy()
        every = torch.arange(levels)[:, None].expand(levels, 16)
        logits, mean, log_scale = vae.decoder_params(z.expand(levels, 2))
        probs = discretized_logistic_mixture_log_mass(every, logits, mean, log_scale,
                                                      levels=levels).exp().numpy()
    tested = 0
    for pixel in range(16):
        expected = probs[:, pixel] / probs[:, pixel].sum() * n
        keep = expected > 5  # chi-square over the levels the mass reaches
        if keep.sum() < 2:
            continue
        counts = np.bincount(draws[:, pixel], minlength=levels)[keep]
        expected = expected[keep] * counts.sum() / expected[keep].sum()
        assert chisquare(counts, expected).pvalue > 1e-3 / 16, pixel
        tested += 1
    assert tested >= 4


def _fit_gan(tmp_path, monkeypatch, budget):
    from gmbench_baselines import gan

    monkeypatch.setattr(loop, "CHECKPOINT_DIR", tmp_path)
    return gan.fit(get_dataset("digits"), seed=0, epochs=2, device="cpu", budget=budget)


def test_gan_stopped_by_its_budget_and_resumed_equals_one_uninterrupted_run(tmp_path,
                                                                            monkeypatch):
    """The alternating update (a discriminator step, then a generator step, one Adam over
    both) and the spectral norm's power-iteration vectors survive the checkpoint."""
    whole = _fit_gan(tmp_path / "a", monkeypatch, loop.Budget())
    clock = {"t": 0.0}

    def fake_monotonic():  # each call a tenth of a second later: stops inside epoch 1
        clock["t"] += 0.1
        return clock["t"]

    monkeypatch.setattr(loop.time, "monotonic", fake_monotonic)
    first = _fit_gan(tmp_path / "b", monkeypatch, loop.Budget(seconds=2.0))
    assert first.extra["complete"] is False and 0 < first.epochs < 2
    monkeypatch.setattr(loop.time, "monotonic", lambda: clock["t"])
    resumed = _fit_gan(tmp_path / "b", monkeypatch, loop.Budget(seconds=10.0))
    assert resumed.extra["complete"] and resumed.extra["sessions"] == 2
    assert whole.tensors.keys() == resumed.tensors.keys()
    for key, value in whole.tensors.items():
        torch.testing.assert_close(value, resumed.tensors[key], rtol=0, atol=0, msg=key)
    fids = [p["fid_2000"] for p in resumed.extra["learning_curve"]]
    assert len(fids) == 3 and all(f > 0 for f in fids)  # epoch 1, the stop, epoch 2


def test_batch_norm_statistics_are_the_mean_of_the_generators_own_batches():
    from gmbench_baselines.gan import BN_BATCHES, Generator, reestimate_batch_norm

    torch.manual_seed(0)
    model = Generator(shape=(1, 8, 8), image=True, latent=4, width=4)
    norm = model.net[0][1]  # the first batch norm, after the stem's linear layer
    stem = model.net[0][0]
    seen = []
    handle = stem.register_forward_hook(lambda m, i, out: seen.append(out.detach()))
    reestimate_batch_norm(model, seed=3)
    handle.remove()
    assert len(seen) == BN_BATCHES and not model.training
    torch.testing.assert_close(norm.running_mean, torch.stack([b.mean(0) for b in seen]).mean(0))
    torch.testing.assert_close(norm.running_var,
                               torch.stack([b.var(0) for b in seen]).mean(0))
