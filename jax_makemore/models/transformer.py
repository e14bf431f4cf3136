"""makemore.py's Transformer: a GPT-2 style decoder over whole padded words.

wte + wpe -> n_layer x [x + attn(ln_1(x)); x + mlp(ln_2(x))] -> ln_f -> lm_head (no bias).

Shape letters: B batch, T positions (<= seq_len in a padded row; any width in a packed row),
C n_embd, A heads, D = C / A per head, V vocab_size, L the positions a decoding cache holds.

Packed rows (`segment_BxT`, `position_BxT`, see `base.py`): attention is causal and stays inside
a word, and the position embedding is indexed by the position within the word, so each word's
logits are those it gets alone in a padded row.

Decoding (`decode=True`, see `base.py`): each attention layer caches the keys and values of the
positions decoded so far (`key_BxLxAxD`, `value_BxLxAxD`), and the model the position index
(`index`, a scalar) that picks the position embedding and the cache slot. A step attends from
the new position to the L cached slots, those after it masked, as the full forward does. The
cache of R rows takes 2 * n_layer * R * L * n_embd * 4 bytes (float32) + 4 (the index).

Initialisation follows the PyTorch modules makemore.py builds, which keep their defaults (no
GPT-2 special init): every Linear gets `torch_dense` (U(+-1/sqrt(fan_in)) for weight and
bias), embeddings N(0, 1), LayerNorm ones / zeros with PyTorch's eps 1e-5. One exception: the
lm_head gets `LM_HEAD_INIT`, as the other model files here do, so that the first loss is
~ln(vocab_size) (PyTorch's default there, on ln_f's unit-variance output, gives logits of
variance 1/3, which lifts the first loss by about a sixth of a nat). `torch_dense` and `lm_head` live in `layers.py`.

Dropout (default 0, makemore has none; at 0 the model is makemore's) sits where nanoGPT puts
it: on the summed embeddings, the attention weights, after each attention projection and
after each MLP. It is `layers.Dropout` (flax.linen.Dropout's masks, and a rate that a sweep may
trace).

Token noise (default 0, off): in training, each input token is replaced with probability
`token_noise` by one drawn uniformly from the vocabulary; the targets stay clean. A
regulariser aimed at memorisation rather than fit: to put a training word's exact spelling
ahead of others, the model has to recognise that exact prefix, and a prefix it sees corrupted
some of the time is one it cannot rely on. Like the dropout rate, it may be traced.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
from flax import linen as nn

from jax_makemore.errors import UserError
from jax_makemore.layers import EMBED_INIT, LAYERNORM_EPS, Dropout, lm_head, torch_dense
from jax_makemore.models.base import (
    ModelSpec,
    causal_word_mask,
    check_decode,
    check_word_layout,
)


class CausalSelfAttention(nn.Module):
    """Multi-head attention where position t attends to positions <= t only (of its own word,
    when `segment_BxT` is given)."""

    n_head: int
    dropout: float

    @nn.compact
    def __call__(
        self,
        x_BxTxC: jax.Array,
        train: bool,
        segment_BxT: jax.Array | None = None,
        *,
        decode: bool = False,
        index: jax.Array | None = None,
    ) -> jax.Array:
        """`decode`: keep a key/value cache (created for this call's B x T); `index`: the
        position of a one-position decode step (T = 1), None for a full forward."""
        B, T, C = x_BxTxC.shape
        A = self.n_head
        D = C // A
        # one projection for q, k, v of all heads, as c_attn = nn.Linear(C, 3C)
        qkv_BxTx3C = torch_dense(3 * C, C, name="c_attn")(x_BxTxC)
        q_BxTxC, k_BxTxC, v_BxTxC = jnp.split(qkv_BxTx3C, 3, axis=-1)
        q_BxTxAxD = q_BxTxC.reshape(B, T, A, D)
        k_BxTxAxD = k_BxTxC.reshape(B, T, A, D)
        v_BxTxAxD = v_BxTxC.reshape(B, T, A, D)
        if decode:
            cached_k = self.variable("cache", "key_BxLxAxD", jnp.zeros, (B, T, A, D))
            cached_v = self.variable("cache", "value_BxLxAxD", jnp.zeros, (B, T, A, D))
        if index is not None:  # the new position's key and value join the cache; read all L
            cached_k.value = jax.lax.dynamic_update_index_in_dim(
                cached_k.value, k_BxTxAxD[:, 0], index, axis=1
            )
            cached_v.value = jax.lax.dynamic_update_index_in_dim(
                cached_v.value, v_BxTxAxD[:, 0], index, axis=1
            )
            k_BxTxAxD, v_BxTxAxD = cached_k.value, cached_v.value
        att_BxAxTxT = jnp.einsum("bqhd,bkhd->bhqk", q_BxTxAxD, k_BxTxAxD) / math.sqrt(D)
        if index is None:
            visible_Bx1xTxT = causal_word_mask(T, segment_BxT)[:, None]
        else:  # one query row: the cached slots up to its position
            visible_Bx1xTxT = (jnp.arange(k_BxTxAxD.shape[1]) <= index)[None, None, None]
        att_BxAxTxT = jnp.where(visible_Bx1xTxT, att_BxAxTxT, -jnp.inf)
        att_BxAxTxT = jax.nn.softmax(att_BxAxTxT, axis=-1)
        att_BxAxTxT = Dropout(self.dropout)(att_BxAxTxT, deterministic=not train)
        y_BxTxAxD = jnp.einsum("bhqk,bkhd->bqhd", att_BxAxTxT, v_BxTxAxD)  # T queries
        y_BxTxC = y_BxTxAxD.reshape(B, T, C)
        y_BxTxC = torch_dense(C, C, name="c_proj")(y_BxTxC)
        return Dropout(self.dropout)(y_BxTxC, deterministic=not train)


class Block(nn.Module):
    """Pre-LayerNorm residual block: attention, then a 4x MLP with tanh-approximate GELU."""

    n_head: int
    dropout: float

    @nn.compact
    def __call__(
        self,
        x_BxTxC: jax.Array,
        train: bool,
        segment_BxT: jax.Array | None = None,
        *,
        decode: bool = False,
        index: jax.Array | None = None,
    ) -> jax.Array:
        C = x_BxTxC.shape[-1]
        ln_1 = nn.LayerNorm(epsilon=LAYERNORM_EPS, name="ln_1")
        x_BxTxC = x_BxTxC + CausalSelfAttention(self.n_head, self.dropout, name="attn")(
            ln_1(x_BxTxC), train, segment_BxT, decode=decode, index=index
        )
        h_BxTxC = nn.LayerNorm(epsilon=LAYERNORM_EPS, name="ln_2")(x_BxTxC)
        h_BxTx4C = torch_dense(4 * C, C, name="c_fc")(h_BxTxC)
        # makemore's NewGELU is the tanh approximation
        h_BxTx4C = jax.nn.gelu(h_BxTx4C, approximate=True)
        h_BxTxC = torch_dense(C, 4 * C, name="c_proj")(h_BxTx4C)
        return x_BxTxC + Dropout(self.dropout)(h_BxTxC, deterministic=not train)


class Transformer(nn.Module):
    """GPT language model over padded or packed words; logits_BxTxV, causal."""

    vocab_size: int
    seq_len: int
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 64
    dropout: float = 0.0
    token_noise: float = 0.0

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
        T = idx_BxT.shape[1]
        index = None  # the position of a decode step; None: the full forward
        if decode and self.has_variable("cache", "index"):
            cached_index = self.variable("cache", "index", jnp.zeros, (), jnp.int32)
            index = cached_index.value
            position_BxT = index[None, None]
            cached_index.value = index + 1
        elif decode:  # the call that creates the cache
            self.variable("cache", "index", jnp.zeros, (), jnp.int32)
        if train and (isinstance(self.token_noise, jax.Array) or self.token_noise > 0.0):
            idx_BxT = self.corrupt(idx_BxT)
        tok_BxTxC = nn.Embed(self.vocab_size, self.n_embd, embedding_init=EMBED_INIT, name="wte")(
            idx_BxT
        )
        # a padded row's positions are 0..T-1 (one 1xT row, broadcast over the batch)
        position_BxT = jnp.arange(T)[None] if position_BxT is None else position_BxT
        pos_BxTxC = nn.Embed(self.seq_len, self.n_embd, embedding_init=EMBED_INIT, name="wpe")(
            position_BxT
        )
        x_BxTxC = Dropout(self.dropout)(tok_BxTxC + pos_BxTxC, deterministic=not train)
        for i in range(self.n_layer):
            x_BxTxC = Block(self.n_head, self.dropout, name=f"block_{i}")(
                x_BxTxC, train, segment_BxT, decode=decode, index=index
            )
        x_BxTxC = nn.LayerNorm(epsilon=LAYERNORM_EPS, name="ln_f")(x_BxTxC)
        return lm_head(self.vocab_size, use_bias=False)(x_BxTxC)

    def corrupt(self, idx_BxT: jax.Array) -> jax.Array:
        """`idx_BxT` with each token replaced, with probability token_noise, by a uniformly
        drawn one (from the 'dropout' rng stream)."""
        replace_key, token_key = jax.random.split(self.make_rng("dropout"))
        replaced_BxT = jax.random.bernoulli(replace_key, self.token_noise, idx_BxT.shape)
        random_BxT = jax.random.randint(token_key, idx_BxT.shape, 0, self.vocab_size, idx_BxT.dtype)
        return jnp.where(replaced_BxT, random_BxT, idx_BxT)


def validate(model: ml_collections.ConfigDict) -> None:
    """Heads split the embedding evenly; dropout and token noise are probabilities."""
    if model.n_embd % model.n_head:
        raise UserError(
            f"config key model.n_embd={model.n_embd} must be divisible by "
            f"model.n_head={model.n_head}"
        )
    if not 0.0 <= model.dropout < 1.0:
        raise UserError(f"config key model.dropout={model.dropout} must be in [0, 1)")
    if not 0.0 <= model.token_noise <= 1.0:
        raise UserError(f"config key model.token_noise={model.token_noise} must be in [0, 1]")


SPECS = (
    ModelSpec("transformer", Transformer, "sequences", validate=validate, packs=True, decodes=True),
)
