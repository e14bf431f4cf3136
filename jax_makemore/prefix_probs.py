"""The model's next-character distribution after given prefixes, a batch in one forward: what
`sample.next_char_probs` and the most-likely search (`search.py`) read; and `PrefixLogprobs`,
which gives a search the same numbers from the decoding cache of a sequence model."""

from __future__ import annotations

import functools
from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from jax_makemore.decode import initial_state
from jax_makemore.models.base import decode_step, init_cache
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


#: The caches of expanded prefixes are kept up to this many bytes (least recently used first
#: dropped).
CACHE_BYTES = 256 << 20


class PrefixLogprobs:
    """`next_char_logprobs` for the prefixes a search expands. A sequence model whose spec
    `decodes` takes each prefix's last character into its parent prefix's decoding cache: one
    decode step per prefix (a batch per prefix length), not a forward over L positions. The
    caches of expanded prefixes are kept up to `cache_bytes`; a prefix whose parent's cache is
    gone, or whose positions pass L, is computed by a forward. Other models: a forward."""

    def __init__(self, trained: LoadedModel, cache_bytes: int = CACHE_BYTES) -> None:
        self.trained, self.cache_bytes = trained, cache_bytes
        self.on_cache = trained.layout == "sequences" and trained.spec.decodes
        self.caches: OrderedDict[str, Any] = OrderedDict()  # prefix -> its cache row
        self.bytes = 0
        self.stepped = self.forwarded = 0  # prefixes scored each way

    def __call__(self, prefixes: Sequence[str]) -> np.ndarray:
        """logp_PxV of each prefix (float64)."""
        if not self.on_cache:
            self.forwarded += len(prefixes)
            return next_char_logprobs(self.trained, prefixes)
        out = np.empty((len(prefixes), self.trained.vocab.size))
        groups: dict[int, list[int]] = defaultdict(list)
        rest = []
        for i, prefix in enumerate(prefixes):
            fits = len(prefix) + 1 <= self.trained.input_len  # positions: boundary + prefix
            if fits and (not prefix or prefix[:-1] in self.caches):
                groups[len(prefix)].append(i)
            elif fits and not self.caches:  # the search's first prefix: fed from the start
                out[i] = self._fed([prefix])[0]
                self.stepped += 1
            else:
                rest.append(i)
        for group in groups.values():  # a parent's cache may have been dropped meanwhile
            rows = [i for i in group if not prefixes[i] or prefixes[i][:-1] in self.caches]
            rest += [i for i in group if i not in rows]
            if rows:
                out[rows] = self._stepped([prefixes[i] for i in rows])
                self.stepped += len(rows)
        if rest:
            out[rest] = next_char_logprobs(self.trained, [prefixes[i] for i in rest])
            self.forwarded += len(rest)
        return out

    def _fed(self, prefixes: list[str]) -> np.ndarray:
        """Prefixes without a parent cache: boundary and characters fed one step at a time."""
        for n in range(len(prefixes[0])):
            self._stepped([p[:n] for p in prefixes])
        return self._stepped(prefixes)

    def _stepped(self, prefixes: list[str]) -> np.ndarray:
        """Prefixes of one length n whose parents' caches are kept (n = 0: the empty cache):
        one decode step on their last tokens."""
        t, vocab, R = self.trained, self.trained.vocab, len(prefixes)
        padded = 1 << max(R - 1, 0).bit_length()
        if prefixes[0]:
            parents = [self.caches[p[:-1]] for p in prefixes]
            for p in prefixes:
                self.caches.move_to_end(p[:-1])
            parents += [parents[0]] * (padded - R)
            cache = jax.tree.map(lambda *rows: np.concatenate(rows) if rows[0].ndim else rows[0],
                                 *parents)  # fmt: skip
            last = [vocab.stoi[p[-1]] for p in prefixes]
        else:
            cache = init_cache(t.model, t.variables, padded, t.input_len)
            last = [vocab.boundary_id] * R
        idx_Rx1 = np.asarray(last + [last[0]] * (padded - R), np.int32)[:, None]
        logp_RxV, cache = jax.device_get(_jit_step(t.model)(t.variables, cache, idx_Rx1))
        for r, prefix in enumerate(prefixes):
            self._keep(prefix, jax.tree.map(lambda a, r=r: a[r : r + 1] if a.ndim else a, cache))
        return np.asarray(logp_RxV[:R], np.float64)

    def _keep(self, prefix: str, cache_row: Any) -> None:
        """Keep a prefix's cache (its leaves with a row axis of 1, the shared scalars)."""
        if prefix in self.caches:
            return
        self.caches[prefix] = cache_row
        self.bytes += sum(a.nbytes for a in jax.tree.leaves(cache_row))
        while self.bytes > self.cache_bytes and len(self.caches) > 1:
            _, dropped = self.caches.popitem(last=False)
            self.bytes -= sum(a.nbytes for a in jax.tree.leaves(dropped))


@functools.lru_cache(maxsize=16)
def _jit_step(model: nn.Module) -> Any:
    """A jitted decode step with log-softmaxed logits, one per module."""

    def step(variables, cache, idx_Rx1):
        logits_RxV, cache = decode_step(model, variables, cache, idx_Rx1)
        return jax.nn.log_softmax(logits_RxV.astype(jnp.float32), axis=-1), cache

    return jax.jit(step)
