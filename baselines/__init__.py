"""The bundled baselines (the contract's section 8): model files in exactly the user's format.

Every family is one model file, ``baselines/<family>.py``, that defines
``load(dataset, device)`` and so evaluates with ``gmbench evaluate baselines/<family>.py
--dataset NAME`` like any user's model. Trained weights live in
``baselines/weights/<family>-<dataset>.safetensors`` beside a JSON training record. How they
are trained and recorded is in :mod:`.training`. Installed, this folder is the package
``gmbench_baselines`` (it claims no generic top-level ``baselines`` name).
"""

from __future__ import annotations

from dataclasses import dataclass

from gmbench.core.registry import Registry

__all__ = ["BASELINES", "IMAGE_DATASETS", "MNIST", "MNIST_BINARIZED", "TEXT_DATASETS", "TOY_DATASETS",
           "Baseline", "families_for",
           "trained_families"]

IMAGE_DATASETS = ("digits", "fashion-mnist")
TEXT_DATASETS = ("shakespeare", "kjv")
TOY_DATASETS = ("toy2d-gmm8", "gauss-2")
# MNIST's two likelihood protocols: 8-bit dequantized (bits/dim, the flow papers) and binarized
# (nats per image, the VAE and PixelCNN papers); each family where its papers report
MNIST = ("mnist",)
MNIST_BINARIZED = ("mnist-binarized",)


@dataclass(frozen=True)
class Baseline:
    """One bundled baseline.

    Attributes:
        name: the family, also its model file ``baselines/<name>.py``.
        datasets: the datasets it is bundled for.
        description: one line for ``gmbench baselines``.
        weights: the family whose trained weights it loads (itself, another family's for a
            variant such as ``vae_elbo``), or ``None`` when it is fitted from the data at load
            time (closed form or no parameters).
        n_samples: ``(dataset, count)`` pairs: a smaller, stated sample count for its board
            rows where sampling is slow.
    """

    name: str
    datasets: tuple[str, ...]
    description: str
    weights: str | None
    n_samples: tuple[tuple[str, int], ...] = ()

    def samples_for(self, dataset: str) -> int | None:
        """The sample count its board rows are recorded at where that is not the default
        (a slow sampler: ancestral PixelCNN sampling), else ``None``."""
        return dict(self.n_samples).get(dataset)

    @property
    def trained(self) -> bool:
        """Whether ``python -m gmbench_baselines.training.train`` fits its own weights."""
        return self.weights == self.name


BASELINES: Registry[Baseline] = Registry("baseline", listing="gmbench baselines")
for _b in (
    Baseline("categorical", IMAGE_DATASETS + MNIST + MNIST_BINARIZED,
             "independent per-dimension categorical (add-one smoothing): the floor",
             "categorical"),
    Baseline("ppca", IMAGE_DATASETS + MNIST + MNIST_BINARIZED + TOY_DATASETS,
             "probabilistic PCA, closed form; images: in logit space of dequantized pixels",
             "ppca"),
    Baseline("ae", IMAGE_DATASETS,
             "convolutional autoencoder (two stride-2 stages); samples decode a Gaussian "
             "mixture fitted to its latents", "ae"),
    Baseline("ae_conditional", IMAGE_DATASETS, "the same autoencoder; one Gaussian per class "
             "in latent space (sample_conditional)", "ae"),
    Baseline("vae", IMAGE_DATASETS + MNIST_BINARIZED,
             "convolutional VAE (the autoencoder's networks), a mixture of 5 discretized "
             "logistics per pixel; log_prob = IWAE-32 estimate", "vae"),
    Baseline("vae_elbo", IMAGE_DATASETS + MNIST_BINARIZED, "the same VAE scored by its ELBO (a lower bound)",
             "vae"),
    Baseline("flow", IMAGE_DATASETS + MNIST + TOY_DATASETS,
             "normalizing flow; images: multi-scale convolutional (Glow-style), dequantized; "
             "vectors: MLP affine couplings", "flow"),
    Baseline("flow_mlp", IMAGE_DATASETS, "the MLP affine coupling flow on images "
             "(RealNVP-style, flattened pixels): a point of comparison", "flow_mlp"),
    Baseline("pixelcnn", IMAGE_DATASETS + MNIST_BINARIZED, "gated PixelCNN (autoregressive): "
             "exact log-mass, ancestral samples", "pixelcnn",
             n_samples=(("fashion-mnist", 2000), ("mnist-binarized", 2000))),
    Baseline("gan", IMAGE_DATASETS + MNIST + TOY_DATASETS, "images: DCGAN-style generator, spectrally normalized "
             "discriminator, hinge loss; 2-D data: an MLP GAN; samples only",
             "gan"),
    Baseline("memorizer", IMAGE_DATASETS + MNIST + MNIST_BINARIZED + TOY_DATASETS,
             "reference model: replays training examples; log_prob: replay + 10% PPCA "
             "back-off", None),
    Baseline("text_memorizer", TEXT_DATASETS, "reference model: replays passages of the "
             "training text (samples only)", None),
    Baseline("unigram", TEXT_DATASETS, "byte frequencies (add-one smoothing): the floor of "
             "text", None),
    Baseline("ngram_kn", TEXT_DATASETS, "interpolated Kneser-Ney 6-gram over bytes, counted "
             "at load", None, n_samples=(("shakespeare", 500), ("kjv", 500))),
    Baseline("byte_transformer", ("shakespeare",), "byte-level causal transformer (6 layers, "
             "width 256, context 256), trained on the CPU", "byte_transformer"),
    Baseline("text_truth", ("text-markov",), "reference model: the generated text's exact "
             "chain", None),
    Baseline("truth", TOY_DATASETS, "reference model: the generated dataset's exact ground "
             "truth", None),
):
    BASELINES.register(_b.name, _b)


def families_for(dataset: str) -> list[str]:
    """The baseline families bundled for ``dataset``, in table order."""
    return [b.name for b in BASELINES.values() if dataset in b.datasets]


def trained_families(dataset: str) -> list[str]:
    """Families of ``dataset`` with their own weights file (trained by
    ``python -m gmbench_baselines.training.train``)."""
    return [b.name for b in BASELINES.values() if dataset in b.datasets and b.trained]
