"""What one train step trains on, drawn on the device from the step's key: random rows of the
training split (windows, or padded words), the whole split (`full_batch`), or packed rows of
whole words (`packed`, sequence models whose spec `packs`; see packing.py).

The draw is a pure function of `fold_in(data_key, step)`, so a resumed run draws the same
batches, K steps fuse in one `lax.scan`, sweeps `vmap` the step, and the rows shard over
devices (`parallel.shard_batch`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jax_makemore import packing as packing_lib
from jax_makemore.data import IGNORE


@dataclasses.dataclass(frozen=True)
class Packing:
    """Packed steps of `rows` rows of `width` positions (a multiple of the device count)."""

    rows: int
    width: int


def packing_from_config(
    config: ml_collections.ConfigDict, Y_train: np.ndarray, seq_len: int, devices: int = 1
) -> Packing | None:
    """The packed step of `config` (None unless `packed`): rows of `row_width(pack_len, L)`,
    as many as hold `batch_size` words per step on average, a multiple of `devices`."""
    if not config.packed or config.full_batch:
        return None
    width = packing_lib.row_width(config.pack_len, seq_len)
    rows = packing_lib.rows_for_words(Y_train, config.batch_size, width, multiple_of=devices)
    return Packing(rows, width)


def draw_batch(
    key: jax.Array,
    X: jax.Array,
    Y: jax.Array,
    *,
    batch_size: int,
    full_batch: bool = False,
    packing: Packing | None = None,
) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
    """(X_B, Y_B, extras): the step's inputs, targets and the keyword arguments the model
    takes besides its input (the packed rows' segment_BxT and position_BxT)."""
    if full_batch:
        return X, Y, {}
    if packing is not None:
        p = packing_lib.pack_rows(key, X, Y, packing.rows, packing.width)
        return p.X_BxW, p.Y_BxW, {"segment_BxT": p.segment_BxW, "position_BxT": p.position_BxW}
    idx_B = jax.random.randint(key, (batch_size,), 0, X.shape[0])
    return X[idx_B], Y[idx_B], {}


def batch_seen(Y_B: jax.Array, boundary_id: int, extras: dict[str, Any]) -> jax.Array:
    """seen_2 = [words, characters] a batch trains on: its counted targets are the characters
    (each word's letters and its end), and the targets that end a word count the words."""
    counted = Y_B != IGNORE
    words = jnp.sum(counted & (Y_B == boundary_id))
    return jnp.stack([words, jnp.sum(counted)]).astype(jnp.int32)
