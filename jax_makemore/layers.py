"""Kaiming init, a BatchNorm written out as in the notes (running stats in `batch_stats`), and a
dropout whose rate may be a traced value.

BatchNorm's one-formula backward (`batchnorm_backward`, the backprop lecture's result) lives
here, where the layer trains with it; the lecture's hand-written backward pass (backprop.py)
imports it from here, so the layer does not depend on the exercise."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

TANH_GAIN = 5.0 / 3.0


def kaiming_normal(gain: float = TANH_GAIN) -> jax.nn.initializers.Initializer:
    """N(0, std^2) with std = gain / sqrt(fan_in), fan_in = the kernel's first axes (Dense: in)."""

    def init(
        key: jax.Array,
        shape: Sequence[int | Any],
        dtype: Any | None = jnp.float32,
        out_sharding: Any = None,
    ) -> jax.Array:
        fan_in = math.prod(shape[:-1])
        return jax.random.normal(key, shape, dtype or jnp.float32) * (gain / math.sqrt(fan_in))

    return init


def batchnorm_backward(
    dhpreact: jax.Array,
    bngain: jax.Array,
    bnraw: jax.Array,
    bnvar_inv: jax.Array,
    *,
    bessel: bool = True,
) -> jax.Array:
    """d loss / d hprebn of BatchNorm in one formula, given d loss / d hpreact.

    Reduces over every axis but the last (n = their product):

        dhprebn = bngain * bnvar_inv / n * (n * dhpreact - sum(dhpreact)
                                            - n / dof * bnraw * sum(dhpreact * bnraw))

    with dof = n - 1 under Bessel's correction (the lecture's n / (n - 1)) and n otherwise.
    The formula is exact with eps > 0 because it is written in bnraw and bnvar_inv.
    """
    axes = tuple(range(dhpreact.ndim - 1))
    n = math.prod(dhpreact.shape[:-1])
    dof = n - 1 if bessel else n
    sum_d = dhpreact.sum(axes, keepdims=True)
    sum_draw = (dhpreact * bnraw).sum(axes, keepdims=True)
    return bngain * bnvar_inv / n * (n * dhpreact - sum_d - n / dof * bnraw * sum_draw)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def batchnorm_train(
    x: jax.Array, gain: jax.Array, bias: jax.Array, eps: float
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """BatchNorm's training forward over every axis but the last, with the biased variance
    (exactly `layers.BatchNorm`'s formula): returns (y, mean, var), the batch statistics
    without the reduced axes. Its VJP is the one-formula `batchnorm_backward` instead of
    autodiff's chain of small steps; `eps` is a Python float."""
    return _batchnorm_train_fwd(x, gain, bias, eps)[0]


def _batchnorm_train_fwd(x, gain, bias, eps):
    axes = tuple(range(x.ndim - 1))
    mean = x.mean(axis=axes)
    var = ((x - mean) ** 2).mean(axis=axes)
    var_inv = jax.lax.rsqrt(var + eps)
    y = (x - mean) * var_inv * gain + bias
    return (y, mean, var), (x, mean, var_inv, gain)


def _batchnorm_train_bwd(eps, res, cotangents):
    x, mean, var_inv, gain = res
    dy, dmean, dvar = cotangents
    axes = tuple(range(x.ndim - 1))
    n = math.prod(x.shape[:-1])
    xhat = (x - mean) * var_inv
    dx = batchnorm_backward(dy, gain, xhat, var_inv, bessel=False)
    # the statistics are outputs too (for running averages); usually their cotangents are 0
    dx = dx + dmean / n + dvar * 2.0 * (x - mean) / n
    return dx, (dy * xhat).sum(axes), dy.sum(axes)


batchnorm_train.defvjp(_batchnorm_train_fwd, _batchnorm_train_bwd)


class BatchNorm(nn.Module):
    """Per-feature normalisation over the batch axis (and, for a `B x T x C` input, the time
    axis too), with a learned gain and bias.

    Training: x_hat = (x - mean) / sqrt(var + eps), with the biased batch variance (the choice
    of flax.linen.BatchNorm and of PyTorch's normalisation); the running mean and variance in
    the `batch_stats` collection move by `momentum` toward the batch statistics, but only when
    that collection is mutable. Evaluation uses the running statistics only, so a batch of one is
    normalised exactly like the same row inside a larger batch.

    `reduce_axes` are the axes the statistics are taken over: all but the last by default (per
    feature), or e.g. `(0,)` for a `B x T x C` input to reproduce the WaveNet lecture's bug of
    statistics per (time, channel); the running statistics have the shape of the other axes.

    `fused_backward` computes the training forward with `batchnorm_train`, whose gradient is
    the one-formula BatchNorm backward (`batchnorm_backward`, derived in the backprop lecture,
    backprop.py) instead of autodiff's chain of small steps; same outputs, same running
    statistics. Only for the default `reduce_axes`.
    """

    momentum: float = 0.001
    eps: float = 1e-5
    reduce_axes: tuple[int, ...] | None = None
    fused_backward: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        axes = self.reduce_axes if self.reduce_axes is not None else tuple(range(x.ndim - 1))
        if self.fused_backward and tuple(sorted(axes)) != tuple(range(x.ndim - 1)):
            raise ValueError(
                f"BatchNorm(fused_backward=True) reduces over every axis but the last; "
                f"reduce_axes={self.reduce_axes} is not supported: use fused_backward=False"
            )
        stat_shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
        features = x.shape[-1]
        gain = self.param("scale", nn.initializers.ones, (features,))
        bias = self.param("bias", nn.initializers.zeros, (features,))
        running_mean = self.variable("batch_stats", "mean", jnp.zeros, stat_shape)
        running_var = self.variable("batch_stats", "var", jnp.ones, stat_shape)
        if not train:
            mean, var = running_mean.value, running_var.value
        elif self.fused_backward:
            y, mean, var = batchnorm_train(x, gain, bias, self.eps)
        else:
            mean = x.mean(axis=axes)
            var = ((x - jnp.expand_dims(mean, axes)) ** 2).mean(axis=axes)
        if train and self.is_mutable_collection("batch_stats") and not self.is_initializing():
            m = self.momentum
            running_mean.value = (1 - m) * running_mean.value + m * jax.lax.stop_gradient(mean)
            running_var.value = (1 - m) * running_var.value + m * jax.lax.stop_gradient(var)
        if train and self.fused_backward:
            return y
        mean, var = jnp.expand_dims(mean, axes), jnp.expand_dims(var, axes)
        return (x - mean) * jax.lax.rsqrt(var + self.eps) * gain + bias


class Dropout(nn.Module):
    """flax.linen.Dropout whose `rate` may also be a traced array (a sweep's per-member value).

    For a Python (concrete) rate it is nn.Dropout line for line: a rate of 0 or
    `deterministic=True` returns the input without drawing (no 'dropout' rng needed), a rate of
    1 returns zeros, otherwise `make_rng('dropout')` draws a Bernoulli(keep_prob) mask and the
    kept inputs are scaled by 1 / keep_prob. The class keeps nn.Dropout's name, so the
    automatic submodule names (`Dropout_0`, ...) and with them the rng streams are the same.

    A traced rate cannot be branched on, so the mask is always drawn and the same formula
    covers every rate: at 0 the mask keeps everything and x / 1 is x; at 1 it keeps nothing
    (the divisor is then 1, not 0, so that the gradient stays finite, as nn.Dropout's zeros
    are). keep_prob is `1 - rate` in float32 here but rounded from a Python float in
    nn.Dropout; the two are the same float32 for rates such as 0.1, 0.2, 0.5, and 1 ulp apart
    for some others (0.09, 0.33).
    """

    rate: float | jax.Array

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
        if deterministic:
            return x
        if not isinstance(self.rate, jax.Array):  # concrete: exactly nn.Dropout's code
            if self.rate == 0.0:
                return x
            if self.rate == 1.0:
                return jnp.zeros_like(x)
            keep_prob = 1.0 - self.rate
            mask = jax.random.bernoulli(self.make_rng("dropout"), p=keep_prob, shape=x.shape)
            return jax.lax.select(mask, x / keep_prob, jnp.zeros_like(x))
        keep = 1.0 - jnp.asarray(self.rate, jnp.float32)  # traced: a sweep member's own rate
        mask = jax.random.bernoulli(self.make_rng("dropout"), p=keep, shape=x.shape)
        divisor = jnp.where(keep > 0.0, keep, 1.0)
        return jax.lax.select(mask, x / divisor, jnp.zeros_like(x))


# PyTorch's default initialisers, for the models makemore.py builds from torch modules.

#: nanoGPT / GPT-2's N(0, 0.02) for the output layer: logits start near 0, loss ~ln(V).
LM_HEAD_INIT = nn.initializers.normal(0.02)
#: nn.Embedding's default N(0, 1).
EMBED_INIT = nn.initializers.normal(1.0)
#: nn.LayerNorm's default eps.
LAYERNORM_EPS = 1e-5


def torch_linear_init(fan_in: int) -> tuple[nn.initializers.Initializer, ...]:
    """(kernel_init, bias_init) of PyTorch's nn.Linear: kaiming_uniform(a=sqrt(5)) for the
    weight and U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the bias, i.e. both U(+-1/sqrt(fan_in)),
    variance 1 / (3 fan_in) (a third of Flax's lecun_normal default)."""
    bound = 1.0 / math.sqrt(fan_in)

    def uniform(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return uniform, uniform


def torch_dense(features: int, fan_in: int, **kwargs) -> nn.Dense:
    """nn.Dense initialised like `torch.nn.Linear(fan_in, features)`."""
    kernel_init, bias_init = torch_linear_init(fan_in)
    return nn.Dense(features, kernel_init=kernel_init, bias_init=bias_init, **kwargs)


def lm_head(features: int, use_bias: bool = True) -> nn.Dense:
    """The output layer, small at init so that the first loss is ~ln(vocab_size)."""
    return nn.Dense(
        features,
        use_bias=use_bias,
        kernel_init=LM_HEAD_INIT,
        bias_init=nn.initializers.zeros,
        name="lm_head",
    )
