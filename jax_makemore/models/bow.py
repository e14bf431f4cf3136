"""makemore.py's bag-of-words model: each position sees the uniform average of the
(token + position) embeddings at and before it, then an MLP.

wte + wpe -> x + causal_average(x) -> x + Dense(tanh(Dense(x))) -> lm_head.

Shape letters: B batch, T positions (<= seq_len), C n_embd, H n_embd2 (MLP hidden),
V vocab_size.

Initialisation as the PyTorch modules makemore.py builds: embeddings N(0, 1), every Linear
`torch_dense` (U(+-1/sqrt(fan_in))); the lm_head gets `LM_HEAD_INIT` so that the first loss is
~ln(vocab_size). The MLP's tanh activations are sown as `h_BxTxH`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from jax_makemore.layers import EMBED_INIT, lm_head, torch_dense
from jax_makemore.models.base import ModelSpec


def causal_average(x_BxTxC: jax.Array) -> jax.Array:
    """y[:, t] = mean(x[:, :t + 1]): attention with equal weights on positions <= t."""
    T = x_BxTxC.shape[1]
    causal_TxT = jnp.tril(jnp.ones((T, T), x_BxTxC.dtype))
    att_TxT = causal_TxT / causal_TxT.sum(axis=1, keepdims=True)
    return jnp.einsum("qk,bkc->bqc", att_TxT, x_BxTxC)


class BoW(nn.Module):
    """Causal bag-of-words language model over padded words; logits_BxTxV."""

    vocab_size: int
    seq_len: int
    n_embd: int = 64
    n_embd2: int = 64

    @nn.compact
    def __call__(self, idx_BxT: jax.Array, train: bool) -> jax.Array:
        T = idx_BxT.shape[1]
        C, H = self.n_embd, self.n_embd2
        tok_BxTxC = nn.Embed(self.vocab_size, C, embedding_init=EMBED_INIT, name="wte")(idx_BxT)
        pos_TxC = nn.Embed(self.seq_len, C, embedding_init=EMBED_INIT, name="wpe")(jnp.arange(T))
        x_BxTxC = tok_BxTxC + pos_TxC
        # makemore's BoWBlock: two residual steps, context average then MLP
        x_BxTxC = x_BxTxC + causal_average(x_BxTxC)
        h_BxTxH = jnp.tanh(torch_dense(H, C, name="c_fc")(x_BxTxC))
        self.sow("intermediates", "h_BxTxH", h_BxTxH)
        x_BxTxC = x_BxTxC + torch_dense(C, H, name="c_proj")(h_BxTxH)
        return lm_head(self.vocab_size)(x_BxTxC)


SPECS = (ModelSpec("bow", BoW, "sequences"),)
