"""The one loss of the package: a masked negative log-likelihood, used by training, evaluation
and scoring alike, for logits of any layout (`BxV` windows or `BxTxV` sequences).

A target of `IGNORE` (-1) never counts: it is masked out explicitly, so it cannot silently
index the last class (the boundary token). Losses are returned as (sum, count) so that batches
of different sizes and padded batches combine exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn

from jax_makemore.data import IGNORE


def masked_nll_per_position(logits: jax.Array, targets: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(-log p(target) at every position, 0 where the target is IGNORE; whether each position
    counts). `logits` has one more (vocabulary) axis than `targets`; both results have the
    shape of `targets`."""
    counted = targets != IGNORE
    safe = jnp.where(counted, targets, 0)
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, safe)
    return jnp.where(counted, nll, 0.0), counted


def masked_nll(logits: jax.Array, targets: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(sum of -log p(target), number of counted targets) over every position whose target is
    not IGNORE. `logits` has one more (vocabulary) axis than `targets`."""
    nll, counted = masked_nll_per_position(logits, targets)
    return jnp.sum(nll), jnp.sum(counted)


def mean_nll(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean -log p(target) over the counted targets: the training loss."""
    total, count = masked_nll(logits, targets)
    return total / jnp.maximum(count, 1)


def make_eval_step(model: nn.Module):
    """`(variables, X, Y) -> (nll sum, count)` in eval mode (running stats, no dropout), jitted."""

    @jax.jit
    def eval_step(variables, X, Y):
        return masked_nll(model.apply(variables, X, train=False), Y)

    return eval_step


def make_row_nll(model: nn.Module):
    """`(variables, X, Y) -> nll_R`: each row's summed -log p over its counted targets, jitted
    (scoring words: a row is a window, or a whole word in the sequences layout)."""

    @jax.jit
    def row_nll(variables, X, Y):
        nll, _ = masked_nll_per_position(model.apply(variables, X, train=False), Y)
        return nll.reshape(nll.shape[0], -1).sum(axis=1)

    return row_nll


def pad_rows(X: np.ndarray, Y: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """X and Y padded to `rows` rows; padded targets are IGNORE, so they never count."""
    pad = rows - len(X)
    X_pad = np.concatenate([X, np.zeros((pad, *X.shape[1:]), X.dtype)])
    Y_pad = np.concatenate([Y, np.full((pad, *Y.shape[1:]), IGNORE, Y.dtype)])
    return X_pad, Y_pad


def padded_batches(
    X: np.ndarray, Y: np.ndarray, batch_size: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """A split in batches of one size, min(batch_size, len(X)) rows, the last one padded with
    targets that never count (none for an empty split): every split of every size then goes
    through one compiled evaluation step, and the batches' (sum, count) add up exactly. The
    batches are views of X and Y but the last (no copy of the split)."""
    if len(X) == 0:
        return []
    batch_size = min(batch_size, len(X))
    batches = [(X[i : i + batch_size], Y[i : i + batch_size]) for i in range(0, len(X), batch_size)]
    if len(batches[-1][0]) < batch_size:
        batches[-1] = pad_rows(*batches[-1], batch_size)
    return batches


def batch_outputs(
    step: Callable,
    X: np.ndarray,
    Y: np.ndarray,
    batch_size: int,
    tick: Callable[[int], None] | None = None,
) -> list:
    """`step(X_b, Y_b)` of every batch of `padded_batches`, fetched to the host. With `tick`,
    each batch is fetched once the next one is dispatched (the device stays busy) and
    `tick(rows)` is called with its real rows: a check for a signal, a progress bar."""
    batches = padded_batches(X, Y, batch_size)
    if tick is None:  # every call dispatched first, one transfer
        return jax.device_get([step(X_b, Y_b) for X_b, Y_b in batches])
    out, pending, left = [], None, len(X)
    for batch in [*batches, None]:
        dispatched = None if batch is None else step(*batch)
        if pending is not None:
            out.append(jax.device_get(pending))
            rows = min(left, batch_size)
            left -= rows
            tick(rows)
        pending = dispatched
    return out


def evaluate_loss(
    eval_step,
    variables: Any,
    X: np.ndarray,
    Y: np.ndarray,
    batch_size: int,
    tick: Callable[[int], None] | None = None,
) -> float | None:
    """Mean NLL per counted target over a split (None when it has none), in the fixed-size
    padded batches of `padded_batches`; `tick` as in `batch_outputs`."""
    step = lambda X_b, Y_b: eval_step(variables, X_b, Y_b)  # noqa: E731
    parts = batch_outputs(step, X, Y, batch_size, tick)
    return mean_of_parts(parts)


def mean_of_parts(parts: list) -> float | None:
    """The mean NLL of the (sum, count) of each batch (None when nothing counts)."""
    if not parts:
        return None
    sums, counts = zip(*parts, strict=True)
    count = int(np.sum(counts))
    return float(np.sum(sums, dtype=np.float64) / count) if count else None
