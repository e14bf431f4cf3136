"""makemore.py's bag-of-words model: each position sees the uniform average of the
(token + position) embeddings at and before it, then an MLP.

wte + wpe -> x + causal_average(x) -> x + Dense(tanh(Dense(x))) -> lm_head.

Shape letters: B batch, T positions (<= seq_len in a padded row; any width in a packed row),
C n_embd, H n_embd2 (MLP hidden), V vocab_size.

Packed rows (`segment_BxT`, `position_BxT`, see `base.py`): the average runs over the positions
of the word only, and the position embedding is indexed by the position within the word.

Decoding (`decode=True`, see `base.py`): the cache holds the running sum of the (token +
position) embeddings (`sum_BxC`) and the position index (`index`, a scalar); a step's average is
the sum over index + 1. The cache of R rows takes R * n_embd * 4 bytes (float32) + 4.

Initialisation as the PyTorch modules makemore.py builds: embeddings N(0, 1), every Linear
`torch_dense` (U(+-1/sqrt(fan_in))); the lm_head gets `LM_HEAD_INIT` so that the first loss is
~ln(vocab_size). The MLP's tanh activations are sown as `h_BxTxH`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from jax_makemore.layers import EMBED_INIT, lm_head, torch_dense
from jax_makemore.models.base import (
    ModelSpec,
    causal_word_mask,
    check_decode,
    check_word_layout,
)


def causal_average(x_BxTxC: jax.Array, segment_BxT: jax.Array | None = None) -> jax.Array:
    """y[:, t] = mean(x[:, :t + 1]): attention with equal weights on positions <= t (of the
    same segment, when `segment_BxT` is given)."""
    T = x_BxTxC.shape[1]
    visible_BxTxT = causal_word_mask(T, segment_BxT).astype(x_BxTxC.dtype)
    att_BxTxT = visible_BxTxT / visible_BxTxT.sum(axis=2, keepdims=True)
    if segment_BxT is None:  # one TxT matrix for the whole batch
        return jnp.einsum("qk,bkc->bqc", att_BxTxT[0], x_BxTxC)
    return jnp.einsum("bqk,bkc->bqc", att_BxTxT, x_BxTxC)


class BoW(nn.Module):
    """Causal bag-of-words language model over padded or packed words; logits_BxTxV."""

    vocab_size: int
    seq_len: int
    n_embd: int = 64
    n_embd2: int = 64

    @nn.compact
    def __call__(
        self,
        idx_BxT: jax.Array,
        train: bool,
        *,
        segment_BxT: jax.Array | None = None,
        position_BxT: jax.Array | None = None,
        decode: bool = False,
    ) -> jax.Array:
        check_word_layout(segment_BxT, position_BxT)
        check_decode(decode, train, segment_BxT, position_BxT)
        B, T = idx_BxT.shape
        C, H = self.n_embd, self.n_embd2
        stepping = decode and self.has_variable("cache", "index")  # else a full forward
        if decode:
            cached_index = self.variable("cache", "index", jnp.zeros, (), jnp.int32)
            cached_sum = self.variable("cache", "sum_BxC", jnp.zeros, (B, C))
        if stepping:
            position_BxT = cached_index.value[None, None]
        tok_BxTxC = nn.Embed(self.vocab_size, C, embedding_init=EMBED_INIT, name="wte")(idx_BxT)
        # a padded row's positions are 0..T-1 (one 1xT row, broadcast over the batch)
        position_BxT = jnp.arange(T)[None] if position_BxT is None else position_BxT
        pos_BxTxC = nn.Embed(self.seq_len, C, embedding_init=EMBED_INIT, name="wpe")(position_BxT)
        x_BxTxC = tok_BxTxC + pos_BxTxC
        # makemore's BoWBlock: two residual steps, context average then MLP
        if stepping:  # T = 1: the new position joins the running sum
            cached_sum.value = cached_sum.value + x_BxTxC[:, 0]
            count = (cached_index.value + 1).astype(x_BxTxC.dtype)
            x_BxTxC = x_BxTxC + (cached_sum.value / count)[:, None]
            cached_index.value = cached_index.value + 1
        else:
            x_BxTxC = x_BxTxC + causal_average(x_BxTxC, segment_BxT)
        h_BxTxH = jnp.tanh(torch_dense(H, C, name="c_fc")(x_BxTxC))
        self.sow("intermediates", "h_BxTxH", h_BxTxH)
        x_BxTxC = x_BxTxC + torch_dense(C, H, name="c_proj")(h_BxTxH)
        return lm_head(self.vocab_size)(x_BxTxC)


SPECS = (ModelSpec("bow", BoW, "sequences", packs=True, decodes=True),)
