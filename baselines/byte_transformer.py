"""A byte-level causal transformer: the neural text baseline.

Every byte is a token (256 of them, no tokenizer), predicted from up to ``context`` previous
bytes; the first byte of a window is predicted from a learned beginning-of-text vector. It
exposes ``token_log_prob`` (per-position conditional log-probabilities, scored by gmbench's
rolling windows) and ``sample`` (passages generated from the beginning-of-text vector, with a
key/value cache). Trained on the CPU by ``python -m gmbench_baselines.training.train --family
byte_transformer --dataset shakespeare`` (resumable); the training record holds the learning
curve.

Evaluate: ``gmbench evaluate baselines/byte_transformer.py --dataset shakespeare``.
"""

from __future__ import annotations

import math
from contextlib import nullcontext

import torch
import torch.nn.functional as F  # noqa: N812 - the usual name
from gmbench_baselines.training.fitting import Fitted, TrainLog
from gmbench_baselines.training.loop import Budget, train_resumable
from gmbench_baselines.training.settings import training_settings
from gmbench_baselines.weights import load_weights
from torch import nn

from gmbench.core.device import cpu_kernels
from gmbench.datasets import Dataset, DatasetInfo

__all__ = ["ByteTransformer", "fit", "load"]

VOCAB = 256
LR = 2e-3
TRAIN_WINDOW = 512  # bytes per training example; each step scores a random sub-window


class Block(nn.Module):
    """Pre-norm attention and MLP; ``cache`` holds the keys and values of earlier positions
    while sampling."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, h: torch.Tensor, cache: list[torch.Tensor] | None = None) -> torch.Tensor:
        n, t, w = h.shape
        q, k, v = self.qkv(self.norm1(h)).view(n, t, 3, self.heads, w // self.heads).unbind(2)
        q, k, v = (a.transpose(1, 2) for a in (q, k, v))  # (n, heads, t, w/heads)
        if cache is not None:
            if cache:
                k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
            cache[:] = [k, v]
            att = F.scaled_dot_product_attention(q, k, v)  # the new position sees every key
        else:
            att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        h = h + self.proj(att.transpose(1, 2).reshape(n, t, w))
        return h + self.mlp(self.norm2(h))


class ByteTransformer(nn.Module):
    """``token_log_prob(x)``: ``(n, T)`` bytes -> ``(n, T)`` ``log p(x_t | x_<t)`` in nats."""

    log_prob_kind = "exact"

    def __init__(self, *, width: int = 256, layers: int = 4, heads: int = 4,
                 context: int = 256, sample_length: int = 256) -> None:
        super().__init__()
        self.context_length = context
        self.sample_length = sample_length
        self.embed = nn.Embedding(VOCAB, width)
        self.position = nn.Parameter(torch.zeros(context, width))
        self.begin = nn.Parameter(torch.zeros(width))
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, VOCAB)
        nn.init.normal_(self.position, std=0.02)
        nn.init.normal_(self.begin, std=0.02)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, T)`` bytes -> ``(n, T, 256)`` logits of each byte given the ones before it."""
        n, t = x.shape
        h = torch.cat([self.begin.expand(n, 1, -1), self.embed(x[:, :-1])], 1)
        h = h + self.position[:t]
        for block in self.blocks:
            h = block(h)
        return self.head(self.norm(h))

    def token_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        x = x.long()
        return torch.log_softmax(self.logits(x).float(), -1).gather(-1, x[..., None])[..., 0]

    def sample(self, n: int) -> torch.Tensor:
        """``(n, sample_length)`` bytes generated at temperature 1 from the beginning."""
        caches: list[list[torch.Tensor]] = [[] for _ in self.blocks]
        h = self.begin.expand(n, 1, -1)
        out = torch.empty(n, self.sample_length, dtype=torch.long, device=self.begin.device)
        for t in range(self.sample_length):
            if t == self.context_length:  # past the context: restart the cache on a window
                raise ValueError("sample_length exceeds the context")
            h = h + self.position[t]
            for block, cache in zip(self.blocks, caches, strict=True):
                h = block(h, cache)
            probs = torch.softmax(self.head(self.norm(h[:, -1])).float(), -1)
            out[:, t] = torch.multinomial(probs, 1)[:, 0]
            h = self.embed(out[:, t:t + 1])
        return out


def _autocast() -> torch.autocast | nullcontext:
    """bfloat16 autocast where the CPU computes it natively (twice as fast), else float32."""
    native = {"avx512_bf16", "amx_bf16"} & set(cpu_kernels().split())
    return torch.autocast("cpu", dtype=torch.bfloat16) if native else nullcontext()


def fit(dataset: Dataset, *, seed: int, epochs: int | None, device: str,
        budget: Budget | None = None) -> Fitted:
    """Adam on the mean per-byte cross-entropy of random windows of the training text."""
    plan = training_settings("byte_transformer", dataset.info)
    docs_train, docs_test = dataset.train.documents, dataset.test.documents
    assert docs_train is not None and docs_test is not None, "a text dataset"
    torch.manual_seed(seed)
    model = build(dict(plan.arch)).to(device)
    context = int(plan.arch["context"])
    x = torch.from_numpy(docs_train.passages(TRAIN_WINDOW).astype("int64"))
    held = torch.from_numpy(docs_test.passages(context).astype("int64"))

    def loss_of(batch: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if batch.shape[1] > context:  # a random sub-window of each training window
            start = torch.randint(0, batch.shape[1] - context + 1, (len(batch), 1), generator=gen)
            batch = batch.gather(1, start + torch.arange(context))
        with _autocast():
            return -model.token_log_prob(batch.to(device)).mean()

    result = train_resumable(
        model, loss_of, x, held_out=held, family="byte_transformer", dataset=dataset.info.name,
        seed=seed, epochs=epochs or plan.epochs, batch_size=plan.batch_size, lr=LR,
        budget=budget, lr_decay=plan.lr_decay, ema_decay=plan.ema_decay,
        log=TrainLog(f"byte_transformer {dataset.info.name}"),
        per_example_to_bpd=1 / math.log(2), settings=dict(plan.arch))
    return Fitted({k: v for k, v in model.state_dict().items()}, dict(plan.arch),
                  final_train_loss=result.final_train_loss, epochs=result.epochs,
                  extra={**result.record(), "loss": "mean nats per byte; curve in bits per byte",
                         "held_out": "passages of the test split (recorded, never used to "
                                     "choose anything)"})


def build(config: dict[str, int]) -> ByteTransformer:
    return ByteTransformer(**config)


def load(dataset: DatasetInfo, device: str) -> ByteTransformer:
    tensors, config = load_weights("byte_transformer", dataset.name, device)
    model = build(config)
    model.load_state_dict(tensors)
    return model.eval().to(device)

