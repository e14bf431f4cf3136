"""The decode loop, plain: draw a character for every row, step, stop at the boundary token or
the cap. `sample.py` runs it as is, or through `sample_speedups.py`'s phases and growing cache,
which give the same words.

State: each row is a context window (layout `windows`: the model reads its `block_size`
characters, the window slides one character per step) or a word buffer (layout `sequences`:
[boundary] + prefix + padding, as in training; the logits at the last filled position give the
next character). One step:

1. logits: a forward over the window, or over the buffer's last L positions (`recompute`); or,
   for a model whose spec `decodes`, one decode step on its cache, which takes the last filled
   position (`cached`). Past L the buffer is cropped to its last L positions and recomputed, as
   makemore.py crops, so cached and recomputed steps give the same logits to float rounding.
2. temperature, then top-k;
3. draw: row b at step t draws `categorical(fold_in(fold_in(key, b), t), logits)`, so a word
   depends on its own row's key only, not on which other rows share its batch;
4. the row stops once it draws the boundary token; every row stops at `max_len` generated
   characters, the cap (length limits that condition the distribution exactly are
   `length_limits.py`'s).

Letters (see the package docstring): B words in a batch, R rows in the loop, S the state row,
G generated positions (max_len), L the model's padded word length, V vocabulary.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import linen as nn

from jax_makemore.data import Vocab
from jax_makemore.models.base import decode_step, init_cache

#: Up to this vocabulary size, top-k ranks logits by counting (B*V*V compares, vectorised);
#: above it, by a sort. On a CPU the count is ~50x faster than a sort for 27 characters.
_RANK_BY_COUNT_MAX_VOCAB = 64


class Carry(NamedTuple):
    """What the loop carries from one step to the next."""

    t: jax.Array  # steps taken: the next character goes to position start + t
    state_RxS: jax.Array  # the rows' windows or word buffers
    cache: Any  # the rows' decoding cache (None when recomputing)
    rows_R: jax.Array  # which word of the batch each row is
    done_R: jax.Array  # the row has drawn the boundary token
    tokens_GxB: jax.Array  # time-major, so that step t writes one contiguous row


class Knobs(NamedTuple):
    """The traced sampling arguments: one compilation serves every value."""

    temperature: jax.Array  # float32 > 0
    top_k: jax.Array  # int32; <= 0 or >= V: no truncation


def initial_state(
    layout: str, input_len: int, vocab: Vocab, prefix: str, max_len: int
) -> tuple[list[int], int]:
    """(state_S, start): the context window of `input_len` characters ending with `prefix`
    (windows, start 0), or the word buffer [boundary] + prefix + padding, at least `input_len`
    long and long enough for `max_len` more characters (sequences, start = filled positions)."""
    b, prefix_ids = vocab.boundary_id, vocab.encode(prefix)
    if layout == "windows":
        return ([b] * input_len + prefix_ids)[-input_len:], 0
    start = 1 + len(prefix_ids)
    length = max(input_len, start + max_len)
    return [b] + prefix_ids + [b] * (length - start), start


def top_k_logits(logits_RxV: jax.Array, top_k: jax.Array) -> jax.Array:
    """Logits below the `top_k`-th largest of their row set to -inf (ties with it are kept)."""
    V = logits_RxV.shape[-1]
    if V <= _RANK_BY_COUNT_MAX_VOCAB:
        # rank = how many logits of the row are strictly larger; kept iff rank < top_k
        rank_RxV = jnp.sum(logits_RxV[:, None, :] > logits_RxV[:, :, None], axis=-1)
        keep_RxV = rank_RxV < top_k
    else:
        kth_R = jnp.sort(logits_RxV, axis=-1)[:, V - top_k]
        keep_RxV = logits_RxV >= kth_R[:, None]
    return jnp.where(keep_RxV, logits_RxV, -jnp.inf)


def shaped_logits(logits_RxV: jax.Array, knobs: Knobs) -> jax.Array:
    """The logits a row draws from: divided by the temperature, then truncated to the top k."""
    logits_RxV = logits_RxV.astype(jnp.float32) / knobs.temperature
    V = logits_RxV.shape[-1]
    truncate = (knobs.top_k > 0) & (knobs.top_k < V)  # lax.cond: no ranking work when off
    return jax.lax.cond(truncate, top_k_logits, lambda lg, _: lg, logits_RxV, knobs.top_k)


def draw(keys_R: jax.Array, t: jax.Array, logits_RxV: jax.Array) -> jax.Array:
    """Step t's characters: row r draws `categorical(fold_in(keys_R[r], t), logits_RxV[r])`."""

    def one(key: jax.Array, logits_V: jax.Array) -> jax.Array:
        return jax.random.categorical(jax.random.fold_in(key, t), logits_V)

    return jax.vmap(one)(keys_R, logits_RxV).astype(jnp.int32)


def row_keys(key: jax.Array, B: int) -> jax.Array:
    """keys_B: word b of a batch draws from `fold_in(key, b)`."""
    return jax.vmap(functools.partial(jax.random.fold_in, key))(jnp.arange(B))


def cached_steps(input_len: int, start: int, decode: bool) -> int:
    """How many steps draw from the cache: those whose last filled position is < L (filled
    positions start + t <= L); the rest crop and recompute."""
    return max(0, input_len - start + 1) if decode else 0


def step_logits(model: nn.Module, layout: str, input_len: int, start: int):
    """(recompute, cached): `(variables, carry) -> (logits_RxV, cache)` for one step, by a
    forward over the window / the last L positions, or by a decode step on the cache."""

    def recompute(variables, carry):
        if layout == "windows":
            return model.apply(variables, carry.state_RxS, train=False), carry.cache
        L, n = input_len, start + carry.t  # n: filled positions of every row's buffer
        first = jnp.clip(n - L, 0, carry.state_RxS.shape[1] - L)
        window_RxL = jax.lax.dynamic_slice_in_dim(carry.state_RxS, first, L, axis=1)
        logits_RxLxV = model.apply(variables, window_RxL, train=False)
        logits_RxV = jax.lax.dynamic_index_in_dim(logits_RxLxV, n - 1 - first, 1, keepdims=False)
        return logits_RxV, carry.cache

    def cached(variables, carry):  # the last filled position goes into the cache
        last_Rx1 = jax.lax.dynamic_slice_in_dim(carry.state_RxS, start - 1 + carry.t, 1, axis=1)
        return decode_step(model, variables, carry.cache, last_Rx1)

    return recompute, cached


def prefilled_cache(model: nn.Module, variables: Any, state_BxS: jax.Array, L: int, start: int):
    """The cache of the B rows, for L positions, after positions 0 .. start - 2 (the boundary
    token and all but the prefix's last character; the first step feeds that one)."""
    cache = init_cache(model, variables, state_BxS.shape[0], L)

    def feed(p, cache):
        idx_Bx1 = jax.lax.dynamic_slice_in_dim(state_BxS, p, 1, axis=1)
        return decode_step(model, variables, cache, idx_Bx1)[1]

    return jax.lax.fori_loop(0, start - 1, feed, cache)


def advance(layout: str, start: int, t: jax.Array, state_RxS: jax.Array, next_R: jax.Array):
    """The rows' state with step t's characters: the window slides, or the buffer fills
    position start + t."""
    if layout == "windows":
        return jnp.concatenate([state_RxS[:, 1:], next_R[:, None]], axis=1)
    return jax.lax.dynamic_update_index_in_dim(state_RxS, next_R, start + t, axis=1)


def run_steps(
    carry: Carry,
    until: int,
    step: Callable[[Carry], tuple[jax.Array, Any]],
    *,
    layout: str,
    start: int,
    boundary_id: int,
    leave_at: int = 0,
    rows_in_order: bool = True,
) -> Carry:
    """Steps while t < `until` and more than `leave_at` rows are generating. `step(carry)`
    gives the rows' drawn characters and cache; a finished row keeps the boundary token.
    `rows_in_order`: the rows are the batch's words in order (no phase has moved them)."""

    def cond(c: Carry) -> jax.Array:
        return (c.t < until) & (jnp.sum(~c.done_R) > leave_at)

    def body(c: Carry) -> Carry:
        drawn_R, cache = step(c)
        next_R = jnp.where(c.done_R, boundary_id, drawn_R)
        if rows_in_order:
            tokens_GxB = c.tokens_GxB.at[c.t].set(next_R)
        else:  # finished rows only rewrite the boundary token their word already has
            tokens_GxB = c.tokens_GxB.at[c.t, c.rows_R].set(next_R, unique_indices=True)
        state_RxS = advance(layout, start, c.t, c.state_RxS, next_R)
        done_R = c.done_R | (next_R == boundary_id)
        return Carry(c.t + 1, state_RxS, cache, c.rows_R, done_R, tokens_GxB)

    return jax.lax.while_loop(cond, body, carry)


def drawing_step(
    logits_fn: Callable, variables: Any, keys_B: jax.Array, knobs: Knobs
) -> Callable[[Carry], tuple[jax.Array, Any]]:
    """`step(carry) -> (drawn_R, cache)`: the logits of `logits_fn`, shaped (`shaped_logits`),
    drawn from each row's own key."""

    def step(c: Carry) -> tuple[jax.Array, Any]:
        logits_RxV, cache = logits_fn(variables, c)
        logits_RxV = shaped_logits(logits_RxV, knobs)
        return draw(keys_B[c.rows_R], c.t, logits_RxV), cache

    return step


@functools.lru_cache(maxsize=16)
def make_sampler(
    model: nn.Module, layout: str, input_len: int, max_len: int, start: int, boundary_id: int,
    decode: bool = False,
) -> Callable[..., jax.Array]:  # fmt: skip
    """A jitted `(variables, key, state_BxS, knobs) -> tokens_BxG` generator: the plain loop.

    `state_BxS` (`initial_state`) has `start` filled positions; the model reads `input_len` of
    them. `decode`: the steps whose last filled position is < L draw from the cache, which
    first takes in the prefix; later steps crop and recompute. Cached: the same model and
    shape reuse one compiled sampler."""
    recompute, cached = step_logits(model, layout, input_len, start)
    decode_until = min(cached_steps(input_len, start, decode), max_len)
    run = functools.partial(run_steps, layout=layout, start=start, boundary_id=boundary_id)

    @jax.jit
    def sample_tokens(variables, key, state_BxS, knobs):
        B = state_BxS.shape[0]
        keys_B = row_keys(key, B)
        step = functools.partial(drawing_step, variables=variables, keys_B=keys_B, knobs=knobs)
        cache = None
        if decode_until:
            cache = prefilled_cache(model, variables, state_BxS, start - 1 + decode_until, start)
        tokens_GxB = jnp.full((max_len, B), boundary_id, jnp.int32)
        carry = Carry(jnp.int32(0), state_BxS, cache, jnp.arange(B), jnp.zeros(B, bool), tokens_GxB)
        if decode_until:
            carry = run(carry, decode_until, step(cached))
        return run(carry, max_len, step(recompute)).tokens_GxB.T

    return sample_tokens
