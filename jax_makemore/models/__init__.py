"""Model registry: every model is a Linen module called as `apply(variables, idx_BxT, train=...)`
and returns next-character logits_BxV."""

from __future__ import annotations

import ml_collections
from flax import linen as nn

from jax_makemore.models.bigram import CountBigram, NeuralBigram
from jax_makemore.models.mlp import MLP

MODEL_NAMES = ("bigram_counts", "bigram", "mlp")


def build_model(config: ml_collections.ConfigDict, vocab_size: int) -> nn.Module:
    """The Linen module named by `config.model`, sized for `vocab_size`."""
    if config.model == "bigram_counts":
        return CountBigram(vocab_size=vocab_size)
    if config.model == "bigram":
        return NeuralBigram(vocab_size=vocab_size)
    if config.model == "mlp":
        return MLP(
            vocab_size=vocab_size,
            block_size=config.block_size,
            n_embd=config.n_embd,
            n_hidden=config.n_hidden,
            use_batchnorm=config.use_batchnorm,
            bn_momentum=config.bn_momentum,
            bn_eps=config.bn_eps,
            kaiming_gain=config.kaiming_gain,
        )
    raise ValueError(f"unknown model {config.model!r}")


__all__ = ["MODEL_NAMES", "build_model", "CountBigram", "NeuralBigram", "MLP"]
