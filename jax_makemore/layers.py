"""Kaiming init and a BatchNorm written out as in the notes (running stats in `batch_stats`)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import linen as nn

TANH_GAIN = 5.0 / 3.0


def kaiming_normal(gain: float = TANH_GAIN) -> jax.nn.initializers.Initializer:
    """N(0, std^2) with std = gain / sqrt(fan_in), fan_in = the kernel's first axes (Dense: in)."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        fan_in = math.prod(shape[:-1])
        return jax.random.normal(key, shape, dtype) * (gain / math.sqrt(fan_in))

    return init


class BatchNorm(nn.Module):
    """Per-feature normalisation over the batch axis, with a learned gain and bias.

    Training: x_hat = (x - mean_B) / sqrt(var_B + eps), with the biased batch variance (the
    choice of flax.linen.BatchNorm and of PyTorch's normalisation); the running mean and variance
    in the `batch_stats` collection move by `momentum` toward the batch statistics, but only when
    that collection is mutable. Evaluation uses the running statistics only, so a batch of one is
    normalised exactly like the same row inside a larger batch.
    """

    momentum: float = 0.001
    eps: float = 1e-5

    @nn.compact
    def __call__(self, x_BxH: jax.Array, train: bool) -> jax.Array:
        features = x_BxH.shape[-1]
        gain = self.param("scale", nn.initializers.ones, (features,))
        bias = self.param("bias", nn.initializers.zeros, (features,))
        running_mean = self.variable("batch_stats", "mean", jnp.zeros, (features,))
        running_var = self.variable("batch_stats", "var", jnp.ones, (features,))
        if train:
            axes = tuple(range(x_BxH.ndim - 1))
            mean = x_BxH.mean(axis=axes)
            var = ((x_BxH - mean) ** 2).mean(axis=axes)
            if self.is_mutable_collection("batch_stats") and not self.is_initializing():
                m = self.momentum
                running_mean.value = (1 - m) * running_mean.value + m * jax.lax.stop_gradient(mean)
                running_var.value = (1 - m) * running_var.value + m * jax.lax.stop_gradient(var)
        else:
            mean, var = running_mean.value, running_var.value
        return (x_BxH - mean) * jax.lax.rsqrt(var + self.eps) * gain + bias
