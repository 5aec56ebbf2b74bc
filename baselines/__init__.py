"""The bundled baselines (SPEC section 8): model files in exactly the user's format.

Every family is one model file, ``baselines/<family>.py``, that defines
``load(dataset, device)`` and so evaluates with ``gmbench evaluate baselines/<family>.py
--dataset NAME`` like any user's model. Trained weights live in
``baselines/weights/<family>-<dataset>.safetensors`` beside a JSON training record; they are
rebuilt by ``python -m baselines.train --family FAMILY --dataset NAME`` and the leaderboards by
``python -m baselines.record --dataset NAME``.
"""

from __future__ import annotations

__all__ = ["BASELINES", "IMAGE_DATASETS", "TOY_DATASETS", "families_for", "trained_families"]

IMAGE_DATASETS = ("digits", "fashion-mnist")
TOY_DATASETS = ("toy2d-gmm8", "gauss-2")

# family -> (datasets it is bundled for, one line for `gmbench baselines`)
BASELINES: dict[str, tuple[tuple[str, ...], str]] = {
    "categorical": (IMAGE_DATASETS,
                    "independent per-dimension categorical (add-one smoothing): the floor"),
    "ppca": (IMAGE_DATASETS + TOY_DATASETS,
             "probabilistic PCA, closed form; images: in logit space of dequantized pixels"),
    "ae": (IMAGE_DATASETS, "MLP autoencoder; samples decode a Gaussian mixture fitted to latents"),
    "ae_conditional": (IMAGE_DATASETS,
                       "the same autoencoder; one Gaussian per class in latent space "
                       "(sample_conditional)"),
    "vae": (IMAGE_DATASETS, "MLP VAE, discretized-logistic decoder; log_prob = IWAE estimate"),
    "vae_elbo": (IMAGE_DATASETS, "the same VAE scored by its ELBO (a lower bound)"),
    "flow": (IMAGE_DATASETS + TOY_DATASETS,
             "RealNVP-style affine coupling flow; images: dequantized, logit preprocessing"),
    "gan": (IMAGE_DATASETS + TOY_DATASETS, "DCGAN (MLP GAN on 2-D data); samples only"),
    "memorizer": (IMAGE_DATASETS + TOY_DATASETS,
                  "replays training examples; log_prob: replay + 10% PPCA back-off"),
    "truth": (TOY_DATASETS, "the generated dataset's exact ground truth"),
}

# Families whose fit needs no iterative training (closed form or no parameters at all).
TRAINED_BY_DATA = ("memorizer", "truth")


def families_for(dataset: str) -> list[str]:
    """The baseline families bundled for ``dataset``, in table order."""
    return [f for f, (datasets, _) in BASELINES.items() if dataset in datasets]


def trained_families(dataset: str) -> list[str]:
    """Families of ``dataset`` that have their own weights file (trained by baselines.train)."""
    return [f for f in families_for(dataset)
            if f not in TRAINED_BY_DATA and f not in ("ae_conditional", "vae_elbo")]
