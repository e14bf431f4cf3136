"""Bengio et al. 2003 MLP as in the notes: Embed -> concat -> Dense -> BatchNorm -> tanh -> Dense."""

from __future__ import annotations

import jax
from flax import linen as nn

from jax_makemore.layers import TANH_GAIN, BatchNorm, kaiming_normal
from jax_makemore.models.base import ModelSpec


class MLP(nn.Module):
    vocab_size: int
    block_size: int = 3
    n_embd: int = 10
    n_hidden: int = 200
    use_batchnorm: bool = True
    bn_momentum: float = BatchNorm.momentum
    bn_eps: float = BatchNorm.eps
    bn_fused_backward: bool = False
    kaiming_gain: float = TANH_GAIN

    @nn.compact
    def __call__(self, idx_BxT: jax.Array, train: bool) -> jax.Array:
        B, T = idx_BxT.shape
        # C ~ N(0, 1) like torch.randn((vocab_size, n_embd))
        emb_BxTxE = nn.Embed(
            self.vocab_size, self.n_embd, embedding_init=nn.initializers.normal(1.0)
        )(idx_BxT)
        self.sow("intermediates", "emb_BxTxE", emb_BxTxE)
        x_BxTE = emb_BxTxE.reshape(B, T * self.n_embd)
        # no hidden bias before BatchNorm: its mean subtraction would cancel it
        preact_BxH = nn.Dense(
            self.n_hidden,
            use_bias=not self.use_batchnorm,
            kernel_init=kaiming_normal(self.kaiming_gain),
        )(x_BxTE)
        if self.use_batchnorm:
            preact_BxH = BatchNorm(
                momentum=self.bn_momentum, eps=self.bn_eps, fused_backward=self.bn_fused_backward
            )(preact_BxH, train)
        self.sow("intermediates", "preact_BxH", preact_BxH)
        h_BxH = jax.numpy.tanh(preact_BxH)
        self.sow("intermediates", "h_BxH", h_BxH)
        # last layer scaled by 0.01 (zero bias) so the first loss is ~ln(vocab_size)
        return nn.Dense(
            self.vocab_size,
            kernel_init=nn.initializers.normal(0.01),
            bias_init=nn.initializers.zeros,
        )(h_BxH)


SPECS = (ModelSpec("mlp", MLP, "windows"),)
