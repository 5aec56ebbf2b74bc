"""Every trained family's settings on every bundled dataset, in one table.

A family's ``fit`` reads its entry with :func:`training_settings`: the architecture it builds
(written into the weights' training record, which is all ``load`` reads back), the planned
epochs, the minibatch size, the learning rate's decay per epoch and the weight average's
decay per step. A new bundled dataset is one entry per family here (and its name in
``gmbench_baselines.IMAGE_DATASETS``); a dataset without an entry trains with the family's
``"images"`` entry (other images: CIFAR-10, your own), its ``"text"`` entry (other text) or its
``"vectors"`` entry (continuous data). Each weights file's training record
(``baselines/weights/<family>-<dataset>.json``) holds the settings it was trained with.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gmbench.datasets import DatasetInfo

__all__ = ["SETTINGS", "Training", "training_settings"]


@dataclass(frozen=True)
class Training:
    """One family's settings on one dataset.

    Attributes:
        arch: the network's size (the model class's keyword arguments).
        epochs: planned passes over the training split (``--epochs`` overrides).
        batch_size: examples per step.
        lr_decay: the learning rate's factor per epoch after the warm-up (the resumable loop;
            the one-cycle loops of vector data and of ``flow_mlp`` do not use it).
        ema_decay: the weight average's factor per step (the resumable loop; digits has 23
            steps an epoch, so a shorter average than on 60,000 images).
        extra: the family's own settings (the autoencoder's latent mixture ``components``).
    """

    arch: Mapping[str, Any]
    epochs: int
    batch_size: int = 64
    lr_decay: float = 0.95
    ema_decay: float = 0.99
    extra: Mapping[str, Any] = field(default_factory=dict)


# 60,000 28x28 images: a faster learning-rate decay and a longer weight average
_FASHION = {"lr_decay": 0.9, "ema_decay": 0.999}
# the MLP coupling flow on vectors (the flow family's too) and on images without an entry
_COUPLING = Training({"hidden": 64, "layers": 8}, 30, batch_size=256)

SETTINGS: dict[str, dict[str, Training]] = {
    "ae": {
        "digits": Training({"width": 32, "latent": 16}, 150, lr_decay=0.98,
                           extra={"components": 10}),
        # 50 latent mixture components rather than 10 cut the FID of 2,000 decoded draws from
        # 109 to 89 (the reconstructions' own: 82), measured on a checkpoint of epoch 1.5
        "fashion-mnist": Training({"width": 32, "latent": 32}, 30, **_FASHION,
                                  extra={"components": 50}),
        "mnist": Training({"width": 32, "latent": 32}, 30, **_FASHION,
                          extra={"components": 50}),
        "images": Training({"width": 32, "latent": 32}, 30, extra={"components": 10}),
    },
    "vae": {
        "digits": Training({"width": 32, "latent": 16, "mixture": 5}, 200, lr_decay=0.98),
        "fashion-mnist": Training({"width": 32, "latent": 32, "mixture": 5}, 30, **_FASHION),
        # two levels: one logistic per pixel is a Bernoulli (the mixture adds nothing)
        "mnist-binarized": Training({"width": 32, "latent": 32, "mixture": 1}, 40,
                                    lr_decay=0.95, ema_decay=0.999),
        "images": Training({"width": 32, "latent": 32, "mixture": 5}, 30),
    },
    # images: the multi-scale flow; vectors: the MLP coupling flow (flow_mlp's fit)
    "flow": {
        "digits": Training({"hidden": 64, "steps": 4}, 150),
        "fashion-mnist": Training({"hidden": 128, "steps": 8}, 30, **_FASHION),
        # the budget of about 3 CPU-hours: 20 epochs of 1 thread
        "mnist": Training({"hidden": 128, "steps": 8}, 20, **_FASHION),
        "images": Training({"hidden": 64, "steps": 4}, 30),
        "vectors": _COUPLING,
    },
    "flow_mlp": {
        "digits": Training({"hidden": 128, "layers": 8}, 40, batch_size=128),
        "fashion-mnist": Training({"hidden": 256, "layers": 8}, 6, batch_size=128),
        "images": _COUPLING,
        "vectors": _COUPLING,
    },
    # digits: batch norm in the discriminator too (its real and fake batches normalized
    # apart, as in DCGAN); with spectral normalization alone the generator collapsed onto two
    # of the ten classes on the 1,437 training digits (FID 640 on 2,000 samples against 23)
    "gan": {
        "digits": Training({"latent": 16, "width": 16, "batch_norm_d": True}, 150,
                           lr_decay=0.98),
        "fashion-mnist": Training({"latent": 64, "width": 32}, 30, **_FASHION),
        "mnist": Training({"latent": 64, "width": 32}, 30, **_FASHION),
        "images": Training({"latent": 64, "width": 32}, 30),
        "vectors": Training({"latent": 8, "width": 128}, 40, batch_size=256),
    },
    "pixelcnn": {
        "digits": Training({"channels": 32, "layers": 5, "kernel": 3}, 60),
        "fashion-mnist": Training({"channels": 32, "layers": 6, "kernel": 5}, 20, **_FASHION),
        "mnist-binarized": Training({"channels": 32, "layers": 6, "kernel": 5}, 20, **_FASHION),
        "images": Training({"channels": 32, "layers": 5, "kernel": 3}, 20),
    },
    # an "epoch" is one pass over the training text's 512-byte windows, each step a random
    # 256-byte sub-window of each: 20 epochs are 2,640 steps of 64 windows (43M bytes); the
    # budget of one CPU sitting (bfloat16 autocast where the CPU has it)
    "byte_transformer": {
        "shakespeare": Training({"width": 256, "layers": 6, "heads": 4, "context": 256}, 20,
                                lr_decay=0.9, ema_decay=0.999),
        "text": Training({"width": 256, "layers": 6, "heads": 4, "context": 256}, 20,
                         lr_decay=0.9, ema_decay=0.999),
    },
}


def training_settings(family: str, info: DatasetInfo) -> Training:
    """``family``'s settings on the dataset ``info``: its own entry, else the family's entry
    for its kind of data (``"images"`` or ``"vectors"``).

    Raises:
        KeyError: the family does not train on this kind of data.
    """
    table = SETTINGS[family]
    kind = {"image": "images", "text": "text"}.get(info.kind, "vectors")
    return table.get(info.name) or table[kind]
