"""Evaluate a model while it trains, notebook style: a tiny VAE on the embedded ``digits``
dataset, scored with gmbench after every epoch (a few seconds an epoch on two CPU cores).

    python examples/train_in_loop.py                          # 4 epochs
    python examples/train_in_loop.py --epochs 8 --out gmbench-out/tiny-vae

Each call of ``gmbench.evaluate`` reuses the dataset, the feature extractor and the real-data
feature passes of the previous calls; nothing is written to disk and no progress bars are
drawn (``progress=False``). With ``--out`` the last epoch's results are saved
(``results.save``): results.json, results.csv and the sample pictures.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

import gmbench
from gmbench.datasets import get_dataset

# %% The data: 8x8 digits with 17 grey levels, as floats in [0, 1]
data = get_dataset("digits")
LEVELS = data.info.levels
x_train = torch.as_tensor(data.train.x, dtype=torch.float32).flatten(1) / (LEVELS - 1)


# %% The model: any object with sample(n) (and, optionally, log_prob(x)) works
class TinyVAE(nn.Module):
    """A 64-128-4 MLP VAE with a Bernoulli-mean decoder; samples are decoder means."""

    def __init__(self, latent: int = 4) -> None:
        super().__init__()
        self.latent = latent
        self.encoder = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 2 * latent))
        self.decoder = nn.Sequential(nn.Linear(latent, 128), nn.ReLU(), nn.Linear(128, 64))

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        mu, log_var = self.encoder(x).chunk(2, dim=1)
        z = mu + torch.randn_like(mu) * (0.5 * log_var).exp()
        recon = nn.functional.binary_cross_entropy_with_logits(self.decoder(z), x,
                                                               reduction="sum")
        kl = 0.5 * (mu.pow(2) + log_var.exp() - 1 - log_var).sum()
        return (recon + kl) / len(x)

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """``n`` images ``(n, 1, 8, 8)`` as floats in [0, 1] (gmbench maps them to levels)."""
        z = torch.randn(n, self.latent)
        return torch.sigmoid(self.decoder(z)).reshape(n, 1, 8, 8)


def main(epochs: int = 4, steps_per_epoch: int = 300, seed: int = 0,
         out: str | None = None) -> list[dict[str, float]]:
    torch.manual_seed(seed)
    model = TinyVAE()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    history = []
    for epoch in range(1, epochs + 1):
        # %% one epoch of training
        model.train()
        for _ in range(steps_per_epoch):
            batch = x_train[torch.randint(0, len(x_train), (128,))]
            opt.zero_grad()
            loss = model.loss(batch)
            loss.backward()
            opt.step()
        # %% evaluate in the loop: same seed every epoch, so differences are the model's
        model.eval()
        results = gmbench.evaluate(model, dataset="digits", metrics=["fid", "precision",
                                   "recall", "coverage"], seed=0, n_samples=1000,
                                   progress=False, name="tiny-vae")
        fid = results["fid"]
        print(f"epoch {epoch}: loss {loss.item():6.2f}  FID {fid.value:7.2f} "
              f"[{fid.ci_low:.2f}, {fid.ci_high:.2f}]  precision {results['precision'].value:.3f}"
              f"  recall {results['recall'].value:.3f}  coverage {results['coverage'].value:.3f}")
        history.append({k: results[k].value for k in results})
    print(results.table())
    if out:
        print(f"saved to {results.save(out)}")
    return history


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="save the last epoch's results here")
    args = parser.parse_args()
    main(epochs=args.epochs, seed=args.seed, out=args.out)
