"""The model's next-character distribution after given prefixes, a batch in one forward: what
`sample.next_char_probs` and the most-likely search (`search.py`) read."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from jax_makemore.decode import initial_state
from jax_makemore.restore import LoadedModel


def next_char_logprobs(trained: LoadedModel, prefixes: Sequence[str]) -> np.ndarray:
    """logp_PxV: the log of `next_char_probs` of each prefix, in one forward (padded to a
    power of 2 rows, so that few shapes compile)."""
    rows, lasts = [], []
    for prefix in prefixes:
        state_S, start = initial_state(trained.layout, trained.input_len, trained.vocab, prefix, 1)
        if trained.layout == "windows":
            rows.append(state_S)
        else:
            L = trained.input_len
            first = max(0, start - L)
            rows.append(state_S[first : first + L])
            lasts.append(start - 1 - first)
    P = len(rows)
    padded = 1 << max(P - 1, 0).bit_length()
    rows_PxS = np.asarray(rows + [rows[0]] * (padded - P), np.int32)
    logits = _forward(trained.model, trained.variables, rows_PxS)[:P]
    if trained.layout == "sequences":
        logits = logits[np.arange(P), np.asarray(lasts)]
    return np.asarray(jax.nn.log_softmax(jnp.asarray(logits, jnp.float32)), np.float64)


def _forward(model: nn.Module, variables: Any, rows_PxS: np.ndarray) -> np.ndarray:
    return np.asarray(_jit_apply(model)(variables, rows_PxS))


@functools.lru_cache(maxsize=16)
def _jit_apply(model: nn.Module) -> Any:
    """A jitted eval-mode `model.apply`, one per module."""
    return jax.jit(lambda v, x: model.apply(v, x, train=False))
