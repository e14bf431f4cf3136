"""The first lecture's two bigram models: a count table and a one-hot neural bigram."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
from flax import linen as nn

from jax_makemore.errors import UserError
from jax_makemore.models.base import ModelSpec


def count_table(X_NxT: jax.Array, Y_N: jax.Array, vocab_size: int) -> jax.Array:
    """counts_VxV[i, j]: how often character j follows character i (the context's last token)."""
    counts_VxV = jnp.zeros((vocab_size, vocab_size), jnp.float32)
    return counts_VxV.at[X_NxT[:, -1], Y_N].add(1.0)


def fit_log_probs(counts_VxV: jax.Array, smoothing: float) -> jax.Array:
    """Row-normalised log-probabilities of add-`smoothing` counts (log 0 = -inf when unseen)."""
    smoothed = counts_VxV + smoothing
    return jnp.log(smoothed / smoothed.sum(axis=1, keepdims=True))


class CountBigram(nn.Module):
    """Looks up the log-probability row of the previous character; the table is fitted, not
    trained (see `fit_count_bigram`), and stored as a param so that checkpointing, evaluation
    and sampling treat it like any other model."""

    vocab_size: int
    block_size: int = 1  # the window width; only its last character is read
    smoothing: float = 1.0  # add-k smoothing of the count table

    @nn.compact
    def __call__(self, idx_BxT: jax.Array, train: bool) -> jax.Array:
        V = self.vocab_size
        log_probs_VxV = self.param("log_probs", nn.initializers.zeros, (V, V))
        return log_probs_VxV[idx_BxT[:, -1]]


def fit_count_bigram(
    model: ml_collections.ConfigDict, X_NxT: jax.Array, Y_N: jax.Array, vocab_size: int
) -> dict[str, jax.Array]:
    """The count bigram's params: smoothed log-probabilities of the training split's counts."""
    return {"log_probs": fit_log_probs(count_table(X_NxT, Y_N, vocab_size), model.smoothing)}


def check_smoothing(model: ml_collections.ConfigDict) -> None:
    if model.smoothing < 0:
        raise UserError(f"config key model.smoothing must be >= 0, got {model.smoothing}")


class NeuralBigram(nn.Module):
    """logits = one_hot(previous character) @ W, W ~ N(0, 1) as `torch.randn((27, 27))`."""

    vocab_size: int
    block_size: int = 1  # the window width; only its last character is read

    @nn.compact
    def __call__(self, idx_BxT: jax.Array, train: bool) -> jax.Array:
        V = self.vocab_size
        W_VxV = self.param("W", nn.initializers.normal(1.0), (V, V))
        xenc_BxV = jax.nn.one_hot(idx_BxT[:, -1], V, dtype=W_VxV.dtype)
        return xenc_BxV @ W_VxV


SPECS = (
    ModelSpec(
        "bigram_counts", CountBigram, "windows", validate=check_smoothing, fit=fit_count_bigram
    ),
    ModelSpec("bigram", NeuralBigram, "windows"),
)
