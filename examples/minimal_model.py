"""A minimal gmbench model file: independent per-pixel categorical, fitted at load time.

    gmbench evaluate examples/minimal_model.py --dataset digits
"""

import torch

DATASET = "digits"


class IndependentCategorical:
    """p(x) = prod_d Cat(x_d; theta_d), theta fitted by add-one smoothed counts."""

    def __init__(self, train: torch.Tensor, levels: int) -> None:
        flat = train.reshape(len(train), -1).long()  # (N, D)
        counts = torch.stack([torch.bincount(col, minlength=levels) for col in flat.T])
        self.shape = train.shape[1:]
        self.log_theta = torch.log((counts + 1.0) / (counts.sum(1, keepdim=True) + levels))

    def sample(self, n: int) -> torch.Tensor:  # (n, *shape) integer levels
        idx = torch.multinomial(self.log_theta.exp(), n, replacement=True)  # (D, n)
        return idx.T.reshape(n, *self.shape)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:  # (n,) log-mass in nats
        flat = x.reshape(len(x), -1)
        return self.log_theta.gather(1, flat.T).sum(0).double()


def load(dataset, device):
    from gmbench.datasets import get_dataset

    train = torch.from_numpy(get_dataset(dataset.name).train.x)
    return IndependentCategorical(train, dataset.levels)
