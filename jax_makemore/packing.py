"""Packed rows for the sequences layout: whole words laid end to end, so that a step computes
only where there are targets.

A padded row holds one word and pads it to L positions; names average about six characters, so
most of a padded step is padding. A packed row of width W holds as many whole words as fit,
each as it is in its padded row (X: the boundary token then the word; Y: the word then the
boundary token, its len + 1 counted targets), and two arrays say where the words are:
`segment_BxW` numbers the row's words 1, 2, ... (0 on the empty tail) and `position_BxW` is the
position within the word. A model whose spec declares `packs` gives every word the logits it
gets alone in a padded row (`models/base.py`).

Drawing (`pack_rows`) is pure, jittable and fixed-shape: candidate words are drawn uniformly
from the split with the step's key and laid out in draw order across the step's rows, a row
being closed when the next word does not fit it (next-fit). Only the word that overflows the
last row is dropped. Dropping an overflowing word at the end of every row instead would favour
short words, since the longer a word, the more likely it is to be the one that straddles a
row's end.

Shape letters, besides the package's: B the packed rows of a step (rows of a batch, as for
padded words); W the packed row width (at least L, so every word fits a row); J the candidate
words drawn for a step; Q the most words a row can hold (W // 2: a word is at least one
character and the boundary token).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jax_makemore.data import IGNORE


class Packed(NamedTuple):
    """One step of packed rows. Empty positions: X the boundary token, Y `IGNORE`, segment 0,
    position 0."""

    X_BxW: jax.Array
    Y_BxW: jax.Array
    segment_BxW: jax.Array
    position_BxW: jax.Array

    def num_words(self) -> jax.Array:
        """The number of words in the step (segments are numbered 1, 2, ... in each row); one
        count per member when the rows carry a leading members axis (a vmapped draw)."""
        return jnp.sum(jnp.max(self.segment_BxW, axis=-1), axis=-1)


def row_width(pack_len: int, seq_len: int) -> int:
    """The packed row width: `pack_len`, widened to the padded word length L = `seq_len` when
    that is longer, so that the longest word of the data always fits one row."""
    return max(int(pack_len), int(seq_len))


def word_tokens(Y_NxL: jax.Array) -> jax.Array:
    """tokens_N: the positions each word occupies in a row, its counted targets (len + 1)."""
    return jnp.sum(Y_NxL != IGNORE, axis=1)


def _place(tokens_J: jax.Array, rows: int, width: int) -> tuple[jax.Array, ...]:
    """Lay candidates 0, 1, ... of `tokens_J` end to end across `rows` rows (next-fit).

    Returns first_B (the row's first candidate), count_B (its number of words) and ends_BxQ
    (the offset after each of the Q candidates from first_B on; only the first count_B are
    words of the row). A candidate longer than `width` ends the packing there.
    """
    Q = width // 2
    tokens_J = jnp.concatenate([tokens_J, jnp.full((Q,), width + 1, tokens_J.dtype)])

    def row(first, _):
        ends_Q = jnp.cumsum(jax.lax.dynamic_slice_in_dim(tokens_J, first, Q))
        count = jnp.sum(ends_Q <= width)  # ends grow, so the fitting ones are a prefix
        return first + count, (first, count, ends_Q)

    # the first row starts at candidate 0; derived from the candidates, so that under
    # shard_map (a sweep's members split over devices) the carry varies as they do
    start = tokens_J[0].astype(jnp.int32) * 0
    _, (first_B, count_B, ends_BxQ) = jax.lax.scan(row, start, None, rows)
    return first_B, count_B, ends_BxQ


def _render(
    X_NxL: jax.Array, Y_NxL: jax.Array, words_J: jax.Array, placed: tuple, width: int
) -> Packed:
    """Gather every position's token, target, segment and position from the placed words."""
    first_B, count_B, ends_BxQ = placed
    w_W = jnp.arange(width)
    slot_BxW = jnp.sum(ends_BxQ[:, None, :] <= w_W[None, :, None], axis=2)  # word index in row
    filled_BxW = slot_BxW < count_B[:, None]
    starts_BxQ = jnp.pad(ends_BxQ, ((0, 0), (1, 0)))[:, :-1]
    position_BxW = w_W - jnp.take_along_axis(
        starts_BxQ, jnp.minimum(slot_BxW, ends_BxQ.shape[1] - 1), 1
    )
    position_BxW = jnp.where(filled_BxW, position_BxW, 0)
    candidate_BxW = jnp.minimum(first_B[:, None] + slot_BxW, words_J.shape[0] - 1)
    word_BxW = words_J[candidate_BxW]
    boundary = X_NxL[0, 0]  # every word's row starts with the boundary token
    X_BxW = jnp.where(filled_BxW, X_NxL[word_BxW, position_BxW], boundary)
    Y_BxW = jnp.where(filled_BxW, Y_NxL[word_BxW, position_BxW], IGNORE)
    segment_BxW = jnp.where(filled_BxW, slot_BxW + 1, 0)
    return Packed(X_BxW, Y_BxW, segment_BxW.astype(jnp.int32), position_BxW.astype(jnp.int32))


def _check_width(L: int, width: int) -> None:
    if width < L:
        raise ValueError(f"packed row width {width} is shorter than the padded word length {L}")


def pack_rows(
    key: jax.Array,
    X_NxL: jax.Array,
    Y_NxL: jax.Array,
    rows: int,
    width: int,
    tokens_N: jax.Array | None = None,
) -> Packed:
    """`rows` packed rows of `width` (>= L) drawn from the split (X_NxL, Y_NxL, the sequences
    layout of `data.sequences`) with `key`: pure, jittable and vmappable, fixed shapes, the
    same key giving the same rows. `tokens_N` (`word_tokens(Y_NxL)`) may be passed to save
    recomputing it at every step.

    Words are drawn uniformly with replacement, as the padded step draws its rows; the number
    of words varies from step to step (`rows_for_words` sizes `rows` for a mean). J = (B + 1) Q
    candidates are drawn, enough to fill every row even with the shortest possible words. To
    shard a step over devices, the caller makes `rows` a multiple of the device count.
    """
    X_NxL, Y_NxL = jnp.asarray(X_NxL), jnp.asarray(Y_NxL)
    N, L = X_NxL.shape
    _check_width(L, width)
    tokens_N = word_tokens(Y_NxL) if tokens_N is None else tokens_N
    words_J = jax.random.randint(key, ((rows + 1) * (width // 2),), 0, N)
    return _render(X_NxL, Y_NxL, words_J, _place(tokens_N[words_J], rows, width), width)


def pack_words(X_NxL: np.ndarray, Y_NxL: np.ndarray, words: Sequence[int], width: int) -> Packed:
    """The given words (row indices of X_NxL, in order) packed next-fit into as many rows as
    they need, none dropped: deterministic, for tests and packed evaluation (host-side)."""
    N, L = X_NxL.shape
    _check_width(L, width)
    words_J = np.asarray(words, np.int32)
    tokens_J = np.asarray(word_tokens(jnp.asarray(Y_NxL)))[words_J]
    rows, used = 1, 0
    for tokens in tokens_J.tolist():  # next-fit on the host, to know how many rows to use
        rows, used = (rows, used + tokens) if used + tokens <= width else (rows + 1, tokens)
    placed = _place(jnp.asarray(tokens_J), rows, width)
    packed = _render(jnp.asarray(X_NxL), jnp.asarray(Y_NxL), jnp.asarray(words_J), placed, width)
    assert int(packed.num_words()) == len(words_J)
    return packed


def words_per_step(
    Y_NxL: np.ndarray, rows: int, width: int, draws: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """(mean, standard deviation) of the number of words in a step of `rows` packed rows of
    `width`, over `draws` steps drawn with a fixed seed: deterministic."""
    tokens_N = word_tokens(jnp.asarray(Y_NxL))
    J = (rows + 1) * (width // 2)

    def count(key):
        tokens_J = tokens_N[jax.random.randint(key, (J,), 0, tokens_N.shape[0])]
        return jnp.sum(_place(tokens_J, rows, width)[1])

    keys = jax.random.split(jax.random.PRNGKey(seed), draws)
    counts = np.asarray(jax.jit(jax.vmap(count))(keys), np.float64)
    return float(counts.mean()), float(counts.std())


def rows_for_words(Y_NxL: np.ndarray, batch_words: int, width: int, multiple_of: int = 1) -> int:
    """The fewest packed rows of `width`, a multiple of `multiple_of` (the device count), whose
    steps hold on average at least `batch_words` words: a packed step then sees at least as
    many words as a padded step of `batch_words` rows, so the optimiser recipe and the words
    seen per step stay comparable. Estimated from 256 rows x 16 steps at a fixed seed."""
    mean, _ = words_per_step(Y_NxL, 256, width, draws=16)
    rows = max(1, math.ceil(batch_words / (mean / 256)))
    return -(-rows // multiple_of) * multiple_of
