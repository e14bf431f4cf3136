"""The hierarchical model of the WaveNet lecture (makemore part 5), in two forms.

`WaveNet` is the lecture's network on context windows: embed the `block_size` characters,
then at each of log2(block_size) levels fuse two consecutive positions (flatten -> Dense
without bias -> BatchNorm -> tanh), so the context is merged slowly, pairwise, instead of being
crushed into one hidden layer as in the MLP; the last level leaves one position, which a Dense
layer turns into the next character's logits.

`WaveNetConv` is the same network, with the same parameter tree, run as dilated causal
convolutions (kernel 2, dilations 1, 2, 4, ...) over a whole padded word: the pairs that the
window form computes again for each of a word's overlapping windows are computed once per
position, and every position of the word gets its logits in one pass.

Shape letters: B batch; T time positions of the current level (block_size for the embeddings,
halved by each level); C features per position entering a level (n_embd, then n_hidden);
D = 2C, two consecutive positions side by side; H n_hidden; V vocab_size; L the padded word
length (seq_len); K = block_size - 1 left-padding positions; S positions of the current level in
the convolutional form (K + L for the embeddings, shrinking by the dilation at each level);
P = 2^(l-1), the dilation of level l, positions of its input that a decoding cache keeps.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
from flax import linen as nn

from jax_makemore.errors import UserError
from jax_makemore.layers import TANH_GAIN, BatchNorm, kaiming_normal
from jax_makemore.models.base import ModelSpec, check_decode


def num_levels(block_size: int) -> int:
    """log2(block_size): the number of pairwise-fusing levels."""
    return block_size.bit_length() - 1


def validate(model_config: ml_collections.ConfigDict) -> None:
    """Each level halves the context, so the window must halve down to exactly one position."""
    block_size = model_config.block_size
    if block_size < 2 or block_size & (block_size - 1):
        raise UserError(
            f"config key model.block_size={block_size} must be a power of two >= 2 "
            f"(each level of {model_config.name} halves the context)"
        )


def flatten_consecutive(x_BxTxC: jax.Array) -> jax.Array:
    """B x T x C -> B x T/2 x 2C: positions 2i and 2i+1 side by side, the earlier one first."""
    B, T, C = x_BxTxC.shape
    return x_BxTxC.reshape(B, T // 2, 2 * C)


def _embed(module: WaveNet | WaveNetConv) -> nn.Embed:
    # N(0, 1) like torch.randn((vocab_size, n_embd))
    return nn.Embed(
        module.vocab_size, module.n_embd, embedding_init=nn.initializers.normal(1.0), name="embed"
    )


def _output(module: WaveNet | WaveNetConv) -> nn.Dense:
    # the lecture's Linear is randn / sqrt(fan_in), and its last weight is then scaled by 0.1
    # (zero bias) so the first loss is ~ln(vocab_size)
    return nn.Dense(
        module.vocab_size,
        kernel_init=kaiming_normal(module.out_scale),
        bias_init=nn.initializers.zeros,
        name="out",
    )


class WaveNet(nn.Module):
    """The lecture's hierarchical network on B x block_size context windows -> B x V logits.

    `bn_over_time=False` reproduces the lecture's bug: BatchNorm statistics over the batch
    axis only, one mean and variance per (position, channel) instead of per channel. The last
    level has a single position, so its statistics are per channel either way.
    """

    vocab_size: int
    block_size: int = 8
    n_embd: int = 24
    n_hidden: int = 128
    bn_over_time: bool = True
    out_scale: float = 0.1
    bn_momentum: float = BatchNorm.momentum
    bn_eps: float = BatchNorm.eps

    @nn.compact
    def __call__(self, idx_BxT: jax.Array, train: bool) -> jax.Array:
        if idx_BxT.shape[1] != self.block_size:
            raise ValueError(f"expected windows of {self.block_size}, got shape {idx_BxT.shape}")
        x_BxTxC = _embed(self)(idx_BxT)
        for level in range(1, num_levels(self.block_size) + 1):
            x_BxTxD = flatten_consecutive(x_BxTxC)
            # no bias before BatchNorm: its mean subtraction would cancel it
            preact_BxTxH = nn.Dense(
                self.n_hidden,
                use_bias=False,
                kernel_init=kaiming_normal(TANH_GAIN),
                name=f"dense_{level}",
            )(x_BxTxD)
            per_position = not self.bn_over_time and preact_BxTxH.shape[1] > 1
            preact_BxTxH = BatchNorm(
                momentum=self.bn_momentum,
                eps=self.bn_eps,
                reduce_axes=(0,) if per_position else None,
                name=f"bn_{level}",
            )(preact_BxTxH, train)
            x_BxTxC = jnp.tanh(preact_BxTxH)
            self.sow("intermediates", f"h_BxTxH_{level}", x_BxTxC)
        h_BxH = x_BxTxC[:, 0, :]  # the last level has one position left
        return _output(self)(h_BxH)


def level_weights(real_BxL: jax.Array, block_size: int) -> list[jax.Array]:
    """For each level of `WaveNetConv`, how many real positions' windows contain each of its
    positions: weight_BxS per level, the last level's being `real_BxL` itself.

    A position of level l feeds level l+1 at the same index (as the earlier of a pair) and at
    index + dilation (as the later), so the counts flow back by a shift-and-add. Weighting the
    BatchNorm statistics by these counts makes them those the window form computes on the batch
    of every real position's window; padding after a word's end counts zero times.
    """
    weight_BxS = real_BxL.astype(jnp.float32)
    weights = [weight_BxS]
    for level in range(num_levels(block_size) - 1, 0, -1):
        d = 2**level  # the dilation of level + 1
        weight_BxS = jnp.pad(weight_BxS, ((0, 0), (0, d))) + jnp.pad(weight_BxS, ((0, 0), (d, 0)))
        weights.append(weight_BxS)
    return weights[::-1]


def weighted_moments(x_BxSxC: jax.Array, weight_BxS: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-channel mean and biased variance over (batch, time), each position counted
    `weight` times (0 for positions that must not count)."""
    w_BxSx1 = weight_BxS[..., None]
    total = w_BxSx1.sum()
    mean_C = (w_BxSx1 * x_BxSxC).sum(axis=(0, 1)) / total
    var_C = (w_BxSx1 * (x_BxSxC - mean_C) ** 2).sum(axis=(0, 1)) / total
    return mean_C, var_C


class MaskedBatchNorm(nn.Module):
    """`layers.BatchNorm` over (batch, time) with per-position weights: padding is left out of
    the statistics. Same parameter and `batch_stats` names and shapes as `layers.BatchNorm`, so
    the two forms of the WaveNet share one variable tree; evaluation uses the running
    statistics only, exactly like `layers.BatchNorm`."""

    momentum: float = BatchNorm.momentum
    eps: float = BatchNorm.eps

    @nn.compact
    def __call__(self, x_BxSxC: jax.Array, weight_BxS: jax.Array | None, train: bool) -> jax.Array:
        C = x_BxSxC.shape[-1]
        gain_C = self.param("scale", nn.initializers.ones, (C,))
        bias_C = self.param("bias", nn.initializers.zeros, (C,))
        running_mean = self.variable("batch_stats", "mean", jnp.zeros, (C,))
        running_var = self.variable("batch_stats", "var", jnp.ones, (C,))
        if train:
            if weight_BxS is None:
                raise ValueError("training statistics need the positions' weights")
            mean_C, var_C = weighted_moments(x_BxSxC, weight_BxS)
            if self.is_mutable_collection("batch_stats") and not self.is_initializing():
                m = self.momentum
                batch_mean_C, batch_var_C = jax.lax.stop_gradient((mean_C, var_C))
                running_mean.value = (1 - m) * running_mean.value + m * batch_mean_C
                running_var.value = (1 - m) * running_var.value + m * batch_var_C
        else:
            mean_C, var_C = running_mean.value, running_var.value
        return (x_BxSxC - mean_C) * jax.lax.rsqrt(var_C + self.eps) * gain_C + bias_C


class CausalPairConv(nn.Module):
    """The window form's `Dense(use_bias=False)` on a flattened pair, as a convolution of
    kernel 2: out[s] = [x[s], x[s + dilation]] @ kernel (VALID, so S shrinks by `dilation`).
    The kernel keeps Dense's name and 2C x H shape (and its initialiser, so both forms draw the
    same values from one key); rows of the earlier position come first, as in the flatten.

    By default the convolution is one matmul over the shifted pairs; `lax_conv=True` computes
    the same numbers with `jax.lax.conv_general_dilated`, whose CPU lowering is much slower (a
    call-time choice, kept to check the two against each other).
    """

    features: int
    dilation: int

    @nn.compact
    def __call__(
        self, x_BxSxC: jax.Array, lax_conv: bool = False, earlier_BxSxC: jax.Array | None = None
    ) -> jax.Array:
        """`earlier_BxSxC` (a decode step): the positions `dilation` before those of `x_BxSxC`,
        so that out[s] = [earlier[s], x[s]] @ kernel with no shrinking."""
        S, C, d = x_BxSxC.shape[1], x_BxSxC.shape[2], self.dilation
        kernel_DxH = self.param("kernel", kaiming_normal(TANH_GAIN), (2 * C, self.features))
        if earlier_BxSxC is not None:
            return jnp.concatenate([earlier_BxSxC, x_BxSxC], axis=-1) @ kernel_DxH
        if lax_conv:
            return jax.lax.conv_general_dilated(
                x_BxSxC,
                kernel_DxH.reshape(2, C, self.features),
                window_strides=(1,),
                padding="VALID",
                rhs_dilation=(d,),
                dimension_numbers=("NWC", "WIO", "NWC"),
            )
        pairs_BxSxD = jnp.concatenate([x_BxSxC[:, : S - d], x_BxSxC[:, d:]], axis=-1)
        return pairs_BxSxD @ kernel_DxH


class WaveNetConv(nn.Module):
    """`WaveNet` over whole padded words (B x L -> B x L x V), position t predicting t + 1.

    The word is left-padded with block_size - 1 boundary tokens, so position t sees exactly the
    window the window form sees for it (the first position's context is all boundary tokens);
    level l is a causal convolution with dilation 2^(l-1). It takes the window form's variables
    unchanged; with the running statistics (train=False) its logits at position t are the window
    form's for that position's window. In training, the BatchNorm statistics count each
    position as often as the windows of the word's real positions (t = 0 and every t whose
    token is not the boundary) contain it, so they equal the window form's on those windows.

    Decoding (`decode=True`, see `base.py`): level l keeps the last P = 2^(l-1) positions of its
    input (`past_BxPxC_l`, a ring buffer: slot index mod P holds the position P before the
    current one) and the model the position index (`index`, a scalar). Positions before the
    word are the left padding, whose value at each level is one constant row, computed in the
    step (an empty cache is all zeros). The cache of R rows takes
    R * (n_embd + (block_size - 2) * n_hidden) * 4 bytes (float32) + 4.

    It trains on one padded word per row only (its spec does not declare `packs`): a packed
    row would need the BatchNorm weights and the left padding restarted at every word. The
    call takes the contract's `segment_BxT` / `position_BxT` and refuses them.
    `lax_conv=True` computes the levels with `jax.lax.conv_general_dilated` (see
    `CausalPairConv`).
    """

    vocab_size: int
    seq_len: int
    block_size: int = WaveNet.block_size
    n_embd: int = WaveNet.n_embd
    n_hidden: int = WaveNet.n_hidden
    out_scale: float = WaveNet.out_scale
    bn_momentum: float = WaveNet.bn_momentum
    bn_eps: float = WaveNet.bn_eps

    @nn.compact
    def __call__(
        self,
        idx_BxL: jax.Array,
        train: bool,
        *,
        segment_BxT: jax.Array | None = None,
        position_BxT: jax.Array | None = None,
        lax_conv: bool = False,
        decode: bool = False,
    ) -> jax.Array:
        if segment_BxT is not None or position_BxT is not None:
            raise ValueError("WaveNetConv takes one padded word per row, not packed rows")
        check_decode(decode, train, segment_BxT, position_BxT)
        B, L = idx_BxL.shape
        boundary = self.vocab_size - 1
        if decode and self.has_variable("cache", "index"):
            return self.decode_step(idx_BxL)
        if decode:  # the call that creates the cache
            self.cache_variables(B)
        # padding is the boundary token, which never occurs inside a word
        real_BxL = (jnp.arange(L) == 0) | (idx_BxL != boundary)
        weights = level_weights(real_BxL, self.block_size)
        pad_BxK = jnp.full((B, self.block_size - 1), boundary, idx_BxL.dtype)
        x_BxSxC = _embed(self)(jnp.concatenate([pad_BxK, idx_BxL], axis=1))
        for level in range(1, num_levels(self.block_size) + 1):
            preact_BxSxH = CausalPairConv(self.n_hidden, 2 ** (level - 1), name=f"dense_{level}")(
                x_BxSxC, lax_conv
            )
            preact_BxSxH = MaskedBatchNorm(self.bn_momentum, self.bn_eps, name=f"bn_{level}")(
                preact_BxSxH, weights[level - 1], train
            )
            x_BxSxC = jnp.tanh(preact_BxSxH)
            self.sow("intermediates", f"h_BxSxH_{level}", x_BxSxC)
        return _output(self)(x_BxSxC)  # S == L after the last level

    def cache_variables(self, B: int) -> tuple[nn.Variable, list[nn.Variable]]:
        """(index, [past_BxPxC of each level]): the decoding cache of B rows."""
        index = self.variable("cache", "index", jnp.zeros, (), jnp.int32)
        past = []
        for level in range(1, num_levels(self.block_size) + 1):
            C = self.n_embd if level == 1 else self.n_hidden
            P = 2 ** (level - 1)
            past.append(self.variable("cache", f"past_BxPxC_{level}", jnp.zeros, (B, P, C)))
        return index, past

    def decode_step(self, idx_Bx1: jax.Array) -> jax.Array:
        """logits_Bx1xV of the next position, `idx_Bx1`, from the cached earlier positions; the
        padding row (pad_1xC) goes through each level beside the real rows."""
        B = idx_Bx1.shape[0]
        index, past = self.cache_variables(B)
        t = index.value
        embed = _embed(self)
        x_BxC = embed(idx_Bx1[:, 0])
        pad_1xC = embed(jnp.full((1,), self.vocab_size - 1, idx_Bx1.dtype))
        for level in range(1, num_levels(self.block_size) + 1):
            P, buffer = 2 ** (level - 1), past[level - 1]
            slot = t % P  # holds position t - P, or nothing yet while t < P
            earlier_BxC = jnp.where(t < P, pad_1xC, buffer.value[:, slot])
            buffer.value = jax.lax.dynamic_update_index_in_dim(buffer.value, x_BxC, slot, axis=1)
            conv = CausalPairConv(self.n_hidden, P, name=f"dense_{level}")
            bn = MaskedBatchNorm(self.bn_momentum, self.bn_eps, name=f"bn_{level}")
            pre_BxH = conv(x_BxC[:, None], earlier_BxSxC=earlier_BxC[:, None])[:, 0]
            pad_pre_1xH = conv(pad_1xC[:, None], earlier_BxSxC=pad_1xC[:, None])[:, 0]
            x_BxC = jnp.tanh(bn(pre_BxH, None, False))
            pad_1xC = jnp.tanh(bn(pad_pre_1xH, None, False))
        index.value = t + 1
        return _output(self)(x_BxC[:, None])


SPECS = (
    ModelSpec("wavenet", WaveNet, "windows", validate=validate),
    ModelSpec("wavenet_conv", WaveNetConv, "sequences", validate=validate, decodes=True),
)
