"""makemore.py's recurrent language models: a vanilla RNN and a GRU over whole padded words.

wte -> scan over time of a cell h_t = cell(x_t, h_{t-1}) from a learned start state ->
lm_head(h_t) at every position. Causal by construction: h_t only reads x_1..x_t.

Shape letters: B batch, T positions, E n_embd (token embedding), H n_embd2 (hidden state),
V vocab_size.

Packed rows (`segment_BxT`, `position_BxT`, see `base.py`): the state goes back to the learned
start state at every word start (position 0), so no state crosses from one word to the next.

Decoding (`decode=True`, see `base.py`): the cache holds the hidden state (`h_BxH`) and the
position index (`index`, a scalar; at 0 the state is the learned start state, since an empty
cache is all zeros). The cache of R rows takes R * n_embd2 * 4 bytes (float32) + 4.

Initialisation as the PyTorch modules makemore.py builds: embeddings N(0, 1), every Linear
`torch_dense` (U(+-1/sqrt(fan_in))), the start state zeros; the lm_head gets `LM_HEAD_INIT`
so that the first loss is ~ln(vocab_size). The hidden states are sown as `h_BxTxH`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from jax_makemore.layers import EMBED_INIT, lm_head, torch_dense
from jax_makemore.models.base import ModelSpec, check_decode, check_word_layout


class RNNCell(nn.Module):
    """h_t = tanh(W [x_t, h_{t-1}] + b)."""

    n_embd2: int

    @nn.compact
    def __call__(self, h_BxH: jax.Array, x_BxE: jax.Array) -> tuple[jax.Array, jax.Array]:
        xh_BxEH = jnp.concatenate([x_BxE, h_BxH], axis=-1)
        h_BxH = jnp.tanh(torch_dense(self.n_embd2, xh_BxEH.shape[-1], name="xh_to_h")(xh_BxEH))
        return h_BxH, h_BxH


class GRUCell(nn.Module):
    """makemore's GRU: a reset gate r wipes channels of h before the candidate hbar is
    computed, and an update gate z blends h and hbar: h_t = (1 - z) h_{t-1} + z hbar."""

    n_embd2: int

    @nn.compact
    def __call__(self, h_BxH: jax.Array, x_BxE: jax.Array) -> tuple[jax.Array, jax.Array]:
        H = self.n_embd2
        xh_BxEH = jnp.concatenate([x_BxE, h_BxH], axis=-1)
        fan_in = xh_BxEH.shape[-1]
        r_BxH = jax.nn.sigmoid(torch_dense(H, fan_in, name="xh_to_r")(xh_BxEH))
        xhr_BxEH = jnp.concatenate([x_BxE, r_BxH * h_BxH], axis=-1)
        hbar_BxH = jnp.tanh(torch_dense(H, fan_in, name="xh_to_hbar")(xhr_BxEH))
        z_BxH = jax.nn.sigmoid(torch_dense(H, fan_in, name="xh_to_z")(xh_BxEH))
        h_BxH = (1.0 - z_BxH) * h_BxH + z_BxH * hbar_BxH
        return h_BxH, h_BxH


class RNN(nn.Module):
    """Recurrent language model with `RNNCell`; `GRU` swaps the cell. Takes any length T."""

    vocab_size: int
    n_embd: int = 64
    n_embd2: int = 64

    def cell_type(self) -> type[nn.Module]:
        return RNNCell

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
        B = idx_BxT.shape[0]
        emb_BxTxE = nn.Embed(self.vocab_size, self.n_embd, embedding_init=EMBED_INIT, name="wte")(
            idx_BxT
        )
        start_1xH = self.param("start", nn.initializers.zeros, (1, self.n_embd2))
        stepping = decode and self.has_variable("cache", "index")  # else a full forward
        if decode:
            cached_index = self.variable("cache", "index", jnp.zeros, (), jnp.int32)
            cached_h = self.variable("cache", "h_BxH", jnp.zeros, (B, self.n_embd2))
        if stepping:  # T = 1: one cell step from the cached state
            h_BxH = jnp.where(cached_index.value == 0, start_1xH, cached_h.value)
            h_BxH, _ = self.cell_type()(self.n_embd2, name="cell")(h_BxH, emb_BxTxE[:, 0])
            cached_h.value = h_BxH
            cached_index.value = cached_index.value + 1
            return lm_head(self.vocab_size)(h_BxH[:, None])
        h0_BxH = jnp.broadcast_to(start_1xH, (B, self.n_embd2))
        # a padded row starts one word at t = 0 only: no per-step reset to compute
        restart_BxT = None if position_BxT is None else position_BxT == 0

        def step(cell: nn.Module, h_BxH: jax.Array, inputs: tuple) -> tuple:
            x_BxE, restart_B = inputs
            if restart_B is not None:
                h_BxH = jnp.where(restart_B[:, None], start_1xH, h_BxH)
            return cell(h_BxH, x_BxE)

        # one set of cell params shared by every time step
        scan = nn.scan(
            step, variable_broadcast="params", split_rngs={"params": False}, in_axes=1, out_axes=1
        )
        cell = self.cell_type()(self.n_embd2, name="cell")
        _, h_BxTxH = scan(cell, h0_BxH, (emb_BxTxE, restart_BxT))
        self.sow("intermediates", "h_BxTxH", h_BxTxH)
        return lm_head(self.vocab_size)(h_BxTxH)


class GRU(RNN):
    """Recurrent language model with `GRUCell`."""

    def cell_type(self) -> type[nn.Module]:
        return GRUCell


SPECS = (
    ModelSpec("rnn", RNN, "sequences", packs=True, decodes=True),
    ModelSpec("gru", GRU, "sequences", packs=True, decodes=True),
)
