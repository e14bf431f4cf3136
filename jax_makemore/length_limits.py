"""Length limits as exact conditioning: words drawn from the sampler's distribution (temperature
and top-k applied) conditioned on `min_len` <= the word's length (prefix included) and at most
`max_len` generated characters, p(w | limits) = p(w) / Z over the words within the limits.

Two routes, both exact:

* **Survival table** (a `windows` model whose contexts can be listed: V^T contexts, T the
  window, with V^T x V <= MAX_CELLS; the bigrams and the MLP on names). With G_g(s) the
  probability that a word in context s, g characters generated, ends within the limits,

      G_{M+1}(s) = 0,   G_g(s) = [g >= m] p(end | s) + sum_{c != end} p(c | s) G_{g+1}(s c),

  (M the most generated characters, m the fewest, `s c` the window slid by c), drawing c with
  weight p(c | s) G_{g+1}(s c) (the end token: p(end | s), once g >= m) gives each word p(w) /
  Z with Z = G_0(s_0), and no word is rejected. The table costs one forward over the V^T
  contexts and M sweeps of V^T x V.
* **Rejection** (every other model: a sequence model's state is its whole word): words drawn
  without limits, up to M + 1 characters, and those outside the limits redrawn as `--new`
  redraws (`sample.filtered_batches`).

Letters: S contexts (V^T), B words in a batch, G generated positions (M + 1).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jax_makemore import decode
from jax_makemore.errors import UserError
from jax_makemore.restore import LoadedModel

#: The survival table is built when the contexts times the vocabulary stay within this many
#: cells (8 Mi: 64 MiB of float64); past it, length limits sample by rejection.
MAX_CELLS = 1 << 23
#: Contexts per forward when the table is built.
_FORWARD_ROWS = 8192


class Limits(NamedTuple):
    """Length limits in generated characters: at least `fewest` (from min_len minus the
    prefix), at most `most`."""

    fewest: int
    most: int

    def admits(self, word: str, prefix: str) -> bool:
        return self.fewest <= len(word) - len(prefix) <= self.most


def limits_for(prefix: str, min_len: int, max_len: int) -> Limits:
    """The limits of `min_len` (whole word) and `max_len` (generated characters)."""
    return Limits(max(0, min_len - len(prefix)), max_len)


def enumerable(trained: LoadedModel) -> bool:
    """Whether the survival table fits: a windows model with V^T x V <= MAX_CELLS."""
    V = trained.vocab.size
    return trained.layout == "windows" and V ** (trained.input_len + 1) <= MAX_CELLS


def all_contexts(V: int, T: int) -> np.ndarray:
    """X_SxT: context s is s's base-V digits, the oldest character first, so that sliding
    context s by character c gives (s mod V^(T-1)) V + c."""
    s_S = np.arange(V**T)
    return ((s_S[:, None] // V ** np.arange(T - 1, -1, -1)) % V).astype(np.int32)


def next_contexts(V: int, T: int) -> np.ndarray:
    """nxt_SxV: the context after context s draws character c."""
    return ((np.arange(V**T) % V ** (T - 1))[:, None] * V + np.arange(V)).astype(np.int32)


def context_probs(trained: LoadedModel, temperature: float, top_k: int) -> np.ndarray:
    """P_SxV (float64): the sampler's next-character distribution in every context."""
    X_SxT = all_contexts(trained.vocab.size, trained.input_len)
    knobs = decode.Knobs(jnp.float32(temperature), jnp.int32(top_k))
    forward = _shaped_forward(trained.model)
    logp = [
        np.asarray(forward(trained.variables, X_SxT[i : i + _FORWARD_ROWS], knobs))
        for i in range(0, len(X_SxT), _FORWARD_ROWS)
    ]
    P_SxV = np.exp(np.concatenate(logp).astype(np.float64))
    return P_SxV / P_SxV.sum(axis=1, keepdims=True)


@functools.lru_cache(maxsize=16)
def _shaped_forward(model):
    def forward(variables, X_RxT, knobs):
        logits = model.apply(variables, X_RxT, train=False)
        return jax.nn.log_softmax(decode.shaped_logits(logits, knobs), axis=-1)

    return jax.jit(forward)


def survival(P_SxV: np.ndarray, boundary_id: int, limits: Limits, T: int) -> np.ndarray:
    """G_GxS with G[g, s] (g = 0 .. M + 1) as in the module docstring (float64)."""
    S, V = P_SxV.shape
    nxt_SxV = next_contexts(V, T)
    go_on_SxV = P_SxV.copy()
    go_on_SxV[:, boundary_id] = 0.0
    G = np.zeros((limits.most + 2, S))
    for g in range(limits.most, -1, -1):
        end_S = P_SxV[:, boundary_id] if g >= limits.fewest else 0.0
        G[g] = end_S + (go_on_SxV * G[g + 1][nxt_SxV]).sum(axis=1)
    return G


class Table(NamedTuple):
    """What the conditioned sampler reads (on the device)."""

    logP_SxV: jax.Array
    logG_GxS: jax.Array
    nxt_SxV: jax.Array
    start: int  # the context of the prefix
    mass: float  # Z: the sampler's probability of a word within the limits
    limits: Limits


def build_table(
    trained: LoadedModel, prefix: str, limits: Limits, temperature: float, top_k: int
) -> Table:
    """The survival table for words after `prefix`; a one-line error when no word within the
    limits has probability > 0."""
    V, T, b = trained.vocab.size, trained.input_len, trained.vocab.boundary_id
    P_SxV = context_probs(trained, temperature, top_k)
    G_GxS = survival(P_SxV, b, limits, T)
    window, _ = decode.initial_state("windows", T, trained.vocab, prefix, limits.most)
    start = int(np.ravel_multi_index(window, (V,) * T))
    mass = float(G_GxS[0, start])
    if not mass > 0:
        raise UserError(
            f"no word of {limits.fewest} to {limits.most} generated characters after "
            f"{prefix!r} has probability > 0 here: widen --min_len/--max_len or raise --top_k"
        )
    with np.errstate(divide="ignore"):
        logs = np.log(P_SxV).astype(np.float32), np.log(G_GxS).astype(np.float32)
    return Table(jnp.asarray(logs[0]), jnp.asarray(logs[1]), jnp.asarray(next_contexts(V, T)),
                 start, mass, limits)  # fmt: skip


@functools.lru_cache(maxsize=16)
def make_conditioned_sampler(B: int, fewest: int, most: int, boundary_id: int):
    """A jitted `(table, key) -> tokens_BxG`: B words drawn step by step from the table's
    weights, row b at step g from `fold_in(fold_in(key, b), g)` as `decode.draw` draws."""
    b = boundary_id

    @jax.jit
    def sample_tokens(logP_SxV, logG_GxS, nxt_SxV, start, key):
        keys_B = decode.row_keys(key, B)

        def body(g, carry):
            s_B, done_B, tokens_GxB = carry
            logw_BxV = logP_SxV[s_B] + logG_GxS[g + 1][nxt_SxV[s_B]]
            end_B = jnp.where(g >= fewest, logP_SxV[s_B, b], -jnp.inf)
            logw_BxV = logw_BxV.at[:, b].set(end_B)
            drawn_B = jnp.where(done_B, b, decode.draw(keys_B, g, logw_BxV))
            s_B = jnp.where(done_B, s_B, nxt_SxV[s_B, drawn_B])
            return s_B, done_B | (drawn_B == b), tokens_GxB.at[g].set(drawn_B)

        s_B = jnp.full((B,), start, jnp.int32)
        tokens_GxB = jnp.full((most + 1, B), b, jnp.int32)
        carry = (s_B, jnp.zeros(B, bool), tokens_GxB)
        return jax.lax.fori_loop(0, most + 1, body, carry)[2].T

    return sample_tokens


def conditioned_batches(
    trained: LoadedModel,
    table: Table,
    key: jax.Array,
    num: int,
    *,
    prefix: str,
    batch_size: int,
) -> Iterator[list[str]]:
    """`num` words within the table's limits after `prefix`, batch by batch (batch i from
    `fold_in(key, i)`), drawn from `table` (`build_table`): exact, no word rejected."""
    batch, lim = min(num, batch_size), table.limits
    sampler = make_conditioned_sampler(batch, lim.fewest, lim.most, trained.vocab.boundary_id)
    start = jnp.int32(table.start)
    for i in range(-(-num // batch)):
        tokens_BxG = sampler(table.logP_SxV, table.logG_GxS, table.nxt_SxV, start,
                             jax.random.fold_in(key, i))  # fmt: skip
        rows = np.asarray(tokens_BxG)[: num - i * batch]
        yield [prefix + trained.vocab.decode(row) for row in rows]
