"""`python -m jax_makemore.sample --workdir DIR`: seeded, batched sampling from a trained model.

Words go to stdout one per line; a summary (new / in train / in val/test, mean length) goes to
stderr. Generation is one compiled program per batch shape, `lax.while_loop`s over the steps in
phases of shrinking batch (`phase_sizes`), for both data layouts:

* windows: the model reads a `block_size` context that slides one character per step;
* sequences: the model reads a padded word buffer that starts with the boundary token at
  position 0, exactly as in training, and the logits at the last filled position give the next
  character; past the model's `seq_len` the buffer's window slides (as makemore.py crops).

A sequences model whose spec `decodes` (see `models/base.py`) is not re-run over the whole
buffer for each character: its cache, initialised for the batch's rows, takes in the boundary
token and the prefix one position at a time, and then each step feeds one character and draws
the next from that position's logits. When the phases shrink, the cache rows go with their
words. A cache whose size grows with the positions it holds (the Transformer's) starts the
first phase, most of the work, on a quarter of L and grows as the steps need
(`cache_lengths`); later phases hold L positions.

Past the trained length L, one rule for every model: positions up to L are decoded from the
cache; a step whose last filled position is L or beyond crops the buffer to its last L
positions and recomputes, as the window always did (a prefix longer than L is recomputed from
its first step). The cached and recomputed samplers thus give the same logits at every step, to
float rounding, and the same words from the same key; `generate(..., recompute=True)` (the
`--recompute` flag) runs the recomputing sampler throughout. Models without a decode path, and
every windows model, recompute.

BatchNorm uses its running statistics (eval mode), dropout is off, and each word stops at the
boundary token or at `max_len`. The same workdir, seed and flags print the same words.

Letters (see the package docstring): B words in a batch, R rows still generating in a phase,
S the state row (a window of T characters, or the word buffer), G generated positions
(max_len), L the model's padded word length (seq_len), V vocabulary.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from jax_makemore.data import Vocab
from jax_makemore.errors import UserError, run_cli
from jax_makemore.models import registry
from jax_makemore.models.base import decode_step, init_cache
from jax_makemore.restore import LoadedModel, default_max_len

__all__ = ["default_max_len", "generate", "next_char_probs", "sample_words"]

#: The largest batch generated in one compiled call; larger requests run in several calls.
MAX_SAMPLE_BATCH = 10_000


#: Generation runs in phases of shrinking batch size: once at most 1/_SHRINK of a phase's rows
#: are still generating, they move to a batch 1/_SHRINK the size, down to _MIN_PHASE_BATCH rows,
#: so that the few long words (names are ~7 characters, max_len ~25) do not keep a large batch
#: running, above all past L, where every step recomputes L positions of every row. A batch
#: shrinks at all only if its second phase would have _FIRST_SHRINK_MIN rows: a smaller batch
#: is one call of `generate`, whose compilation more phases would lengthen by more than they
#: save, and it draws the words it always drew.
_SHRINK = 4
_MIN_PHASE_BATCH = 16
_FIRST_SHRINK_MIN = 512
#: Up to this vocabulary size, top-k ranks logits by counting (B*V*V compares, vectorised);
#: above it, by a sort. On a CPU the count is ~50x faster than a sort for 27 characters.
_RANK_BY_COUNT_MAX_VOCAB = 64


def phase_sizes(batch: int) -> list[int]:
    """Batch sizes of the generation phases for a batch of `batch` words, largest first."""
    sizes = [batch]
    while batch // _SHRINK >= _FIRST_SHRINK_MIN and sizes[-1] // _SHRINK >= _MIN_PHASE_BATCH:
        sizes.append(-(-sizes[-1] // _SHRINK))
    return sizes


def top_k_logits(logits_BxV: jax.Array, top_k: jax.Array) -> jax.Array:
    """Logits below the `top_k`-th largest of their row set to -inf (ties with it are kept)."""
    V = logits_BxV.shape[-1]
    if V <= _RANK_BY_COUNT_MAX_VOCAB:
        # rank = how many logits of the row are strictly larger; kept iff rank < top_k
        rank_BxV = jnp.sum(logits_BxV[:, None, :] > logits_BxV[:, :, None], axis=-1)
        keep_BxV = rank_BxV < top_k
    else:
        kth_B = jnp.sort(logits_BxV, axis=-1)[:, V - top_k]
        keep_BxV = logits_BxV >= kth_B[:, None]
    return jnp.where(keep_BxV, logits_BxV, -jnp.inf)


class _Carry(NamedTuple):
    """What the generation loop carries from one step to the next."""

    t: jax.Array  # steps taken: the next character goes to position start + t
    state_RxS: jax.Array  # the rows' windows or word buffers
    cache: Any  # the rows' decoding cache (None when recomputing)
    rows_R: jax.Array  # which word of the batch each row is
    done_R: jax.Array  # the row has drawn the boundary token
    tokens_GxB: jax.Array  # time-major, so that step t writes one contiguous row


def draw(
    key: jax.Array, t: jax.Array, logits_RxV: jax.Array, temperature: jax.Array, top_k: jax.Array
) -> jax.Array:
    """Step t's characters: `categorical(fold_in(key, t), logits / temperature)`, truncated to
    the top k when 0 < top_k < V."""
    logits_RxV = logits_RxV / temperature
    V = logits_RxV.shape[-1]
    truncate = (top_k > 0) & (top_k < V)  # lax.cond: no ranking work when top-k is off
    logits_RxV = jax.lax.cond(truncate, top_k_logits, lambda logits, _: logits, logits_RxV, top_k)
    return jax.random.categorical(jax.random.fold_in(key, t), logits_RxV).astype(jnp.int32)


def keep_rows(carry: _Carry, R: int) -> _Carry:
    """The R rows still generating (then finished ones, if fewer are left), cache rows
    included: every cache leaf with an axis has the rows first, a scalar one is shared."""
    order_R = jnp.argsort(carry.done_R, stable=True)[:R]
    cache = jax.tree.map(lambda a: a[order_R] if a.ndim else a, carry.cache)
    return carry._replace(
        state_RxS=carry.state_RxS[order_R],
        cache=cache,
        rows_R=carry.rows_R[order_R],
        done_R=carry.done_R[order_R],
    )


def cached_steps(input_len: int, start: int, decode: bool) -> int:
    """How many steps draw from the cache: those whose last filled position is < L (filled
    positions start + t <= L); the rest crop and recompute."""
    return max(0, input_len - start + 1) if decode else 0


def _step_logits(model: nn.Module, layout: str, input_len: int, start: int):
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


def cache_shapes(model: nn.Module, variables: Any, rows: int, length: int) -> Any:
    """The shapes and dtypes of the cache of `rows` rows for `length` positions."""
    return jax.eval_shape(lambda v: init_cache(model, v, rows, length), variables)


def cache_lengths(
    model: nn.Module, variables: Any, input_len: int, start: int, decode_until: int
) -> tuple[int, ...]:
    """The positions the cache holds in each stage of the first phase, the last of them the
    full cache that later phases keep.

    The cached steps feed positions up to start - 2 + decode_until, so the full cache holds
    start - 1 + decode_until (L at most). Where a cache's size grows with its length (the
    Transformer's keys and values, which every step reads, and copies, in full; not a
    recurrent state), the first phase starts on a quarter of L and doubles it as its steps
    reach the end: that phase ends once all but 1/_SHRINK of the words are done, which for
    names is around L / 2, and it is most of the work."""
    full = start - 1 + decode_until
    if not decode_until or cache_shapes(model, variables, 1, 1) == cache_shapes(
        model, variables, 1, full
    ):
        return (full,)  # the cache is no smaller for fewer positions
    short = [n for n in (input_len // 4, input_len // 2) if start <= n < full]
    return (*short, full)  # a short stage has at least one step: n >= start


def grown(carry: _Carry, length: int, *, model: nn.Module, variables: Any) -> _Carry:
    """The carry with its cache room for `length` positions: zeros appended on every axis that
    grows with the length. A slot not yet written is zero (`init_cache`), so the grown cache
    is the one a cache of `length` positions would be after the same steps."""
    if carry.cache is None:
        return carry
    shapes = cache_shapes(model, variables, carry.rows_R.shape[0], length)

    def pad(a: jax.Array, s: jax.ShapeDtypeStruct) -> jax.Array:
        if a.shape == s.shape:
            return a
        return jnp.pad(a, [(0, n - m) for m, n in zip(a.shape, s.shape, strict=True)])

    return carry._replace(cache=jax.tree.map(pad, carry.cache, shapes))


def advance(layout: str, start: int, t: jax.Array, state_RxS: jax.Array, next_R: jax.Array):
    """The rows' state with step t's characters: the window slides, or the buffer fills
    position start + t."""
    if layout == "windows":
        return jnp.concatenate([state_RxS[:, 1:], next_R[:, None]], axis=1)
    return jax.lax.dynamic_update_index_in_dim(state_RxS, next_R, start + t, axis=1)


def run_steps(
    carry: _Carry,
    until: int,
    step: Callable[[_Carry], tuple[jax.Array, Any]],
    *,
    leave_at: int,
    first_phase: bool,
    layout: str,
    start: int,
    boundary_id: int,
) -> _Carry:
    """Steps while t < `until` and more than `leave_at` rows are generating. `step(carry)`
    gives the rows' drawn characters and cache; a finished row keeps the boundary token."""

    def cond(c: _Carry) -> jax.Array:
        return (c.t < until) & (jnp.sum(~c.done_R) > leave_at)

    def body(c: _Carry) -> _Carry:
        drawn_R, cache = step(c)
        next_R = jnp.where(c.done_R, boundary_id, drawn_R)
        if first_phase:  # the rows are still the batch, in order
            tokens_GxB = c.tokens_GxB.at[c.t].set(next_R)
        else:  # finished rows only rewrite the boundary token their word already has
            tokens_GxB = c.tokens_GxB.at[c.t, c.rows_R].set(next_R, unique_indices=True)
        state_RxS = advance(layout, start, c.t, c.state_RxS, next_R)
        done_R = c.done_R | (next_R == boundary_id)
        return _Carry(c.t + 1, state_RxS, cache, c.rows_R, done_R, tokens_GxB)

    return jax.lax.while_loop(cond, body, carry)


def run_phases(
    carry: _Carry,
    steps: Callable[[_Carry, int, bool, int], _Carry],
    grow: Callable[[_Carry, int], _Carry],
    sizes: Sequence[int],
    lengths: tuple[int, ...],
    *,
    decode_until: int,
    max_len: int,
    start: int,
) -> _Carry:
    """Every phase of the batch: `sizes` rows each (then 0), phase i's steps from the cache
    while they can (`decode_until`) and then recomputing, its rows still generating moved to
    phase i + 1 (`keep_rows`), cache rows included.

    `steps(carry, i, from_cache, until)` runs phase i's steps up to `until`; `grow(carry, n)`
    gives the cache room for n positions. The first phase goes through the cache `lengths`
    (`cache_lengths`): on each short cache while its steps last and more than sizes[1] rows
    are generating; then on to the next length if they still are, else to the next phase,
    whose cache (that of every later phase) has the last, full length."""

    def phase(carry: _Carry, i: int) -> _Carry:
        if decode_until:
            carry = steps(carry, i, True, decode_until)
        return steps(carry, i, False, max_len)

    def moved(carry: _Carry, i: int) -> _Carry:  # the rows of phase i + 1, the full cache
        carry = keep_rows(carry, sizes[i + 1]) if sizes[i + 1] else carry
        return grow(carry, lengths[-1])

    def first_phase(carry: _Carry, stages: tuple[int, ...]) -> _Carry:
        carry = grow(carry, stages[0])
        if len(stages) == 1:  # the full cache
            return moved(phase(carry, 0), 0)
        carry = steps(carry, 0, True, cached_steps(stages[0], start, True))
        return jax.lax.cond(
            jnp.sum(~carry.done_R) > sizes[1],
            lambda c: first_phase(c, stages[1:]),
            lambda c: moved(c, 0),
            carry,
        )

    carry = first_phase(carry, lengths)
    for i in range(1, len(sizes) - 1):
        carry = moved(phase(carry, i), i)
    return carry


@functools.lru_cache(maxsize=16)
def make_sampler(
    model: nn.Module,
    layout: str,
    input_len: int,
    max_len: int,
    start: int,
    boundary_id: int,
    decode: bool = False,
) -> Callable[..., jax.Array]:
    """A jitted `(variables, key, state_BxS, temperature, top_k) -> tokens_BxG` generator.

    `state_BxS` is the context window (windows layout) or the word buffer (sequences layout,
    `start` = its number of filled positions: the boundary token and the prefix), of which the
    model reads `input_len` positions (its window width, or its padded word length L).
    `decode` (a model whose spec `decodes`): the steps whose last filled position is < L draw
    from the cache, which first takes in the prefix; later steps crop and recompute. Temperature
    and top_k are traced, so one compilation serves every value; top_k <= 0 or >= vocab size
    means no truncation. Step t draws with `fold_in(key, t)` (`draw`) for the rows still
    generating; which rows those are depends only on earlier steps, so every word is an exact
    sample from the model, and the same key gives the same words. Cached: the same model and
    shape reuse one compiled sampler.
    """
    recompute, cached = _step_logits(model, layout, input_len, start)
    decode_until = min(cached_steps(input_len, start, decode), max_len)
    run = functools.partial(run_steps, layout=layout, start=start, boundary_id=boundary_id)

    @jax.jit
    def sample_tokens(variables, key, state_BxS, temperature, top_k):
        B = state_BxS.shape[0]
        sizes = [*phase_sizes(B), 0]  # 0: no phase after the last
        lengths = cache_lengths(model, variables, input_len, start, decode_until)
        lengths = lengths if len(sizes) > 2 else lengths[-1:]  # a small batch: no stages

        def steps(carry: _Carry, i: int, from_cache: bool, until: int) -> _Carry:
            def step(c: _Carry) -> tuple[jax.Array, Any]:
                logits_RxV, cache = (cached if from_cache else recompute)(variables, c)
                return draw(key, c.t, logits_RxV, temperature, top_k), cache

            return run(carry, until, step, leave_at=sizes[i + 1], first_phase=i == 0)

        cache = (
            prefilled_cache(model, variables, state_BxS, lengths[0], start)
            if decode_until
            else None
        )
        tokens_GxB = jnp.full((max_len, B), boundary_id, jnp.int32)
        carry = _Carry(
            jnp.int32(0), state_BxS, cache, jnp.arange(B), jnp.zeros(B, bool), tokens_GxB
        )
        grow = functools.partial(grown, model=model, variables=variables)
        phases = dict(decode_until=decode_until, max_len=max_len, start=start)
        carry = run_phases(carry, steps, grow, sizes, lengths, **phases)
        return carry.tokens_GxB.T

    return sample_tokens


def initial_state(layout: str, input_len: int, vocab: Vocab, prefix: str, max_len: int):
    """(state_S, start): the context window of `input_len` characters ending with `prefix`
    (windows), or the word buffer [boundary] + prefix + padding, at least `input_len` long and
    long enough for `max_len` more characters (sequences)."""
    b, prefix_ids = vocab.boundary_id, vocab.encode(prefix)
    if layout == "windows":
        return ([b] * input_len + prefix_ids)[-input_len:], 0
    start = 1 + len(prefix_ids)
    length = max(input_len, start + max_len)
    return [b] + prefix_ids + [b] * (length - start), start


def spec_decodes(model: nn.Module) -> bool:
    """Whether the spec registered for the module's class declares a decode path (a module
    of no registered class has none)."""
    return any(spec.module is type(model) and spec.decodes for spec in registry().values())


def check_sampling_args(
    vocab: Vocab, num: int, temperature: float, top_k: int, prefix: str
) -> None:
    """One-line errors for arguments no sampler can honour."""
    if num <= 0:
        raise UserError(f"--num must be > 0, got {num}")
    if not temperature > 0:
        raise UserError(f"--temperature must be > 0, got {temperature}")
    if top_k < 0 or top_k > vocab.size:
        raise UserError(
            f"--top_k must be between 0 (off) and the vocabulary size {vocab.size}, got {top_k}"
        )
    vocab.check_known(prefix, f"--prefix {prefix!r}")


def generate(
    model: nn.Module,
    variables: Any,
    vocab: Vocab,
    key: jax.Array,
    num: int,
    *,
    layout: str,
    input_len: int,
    max_len: int,
    temperature: float = 1.0,
    top_k: int = 0,
    prefix: str = "",
    batch_size: int = MAX_SAMPLE_BATCH,
    recompute: bool = False,
) -> list[str]:
    """`num` words, each `prefix` + up to `max_len` generated characters, from a model of
    `layout` (its spec's) that reads `input_len` positions (models.input_length).

    A model whose spec `decodes` draws from its cache up to L positions; `recompute=True` runs
    every step as a forward over the window instead (the same words, to float rounding). Batch
    i draws from `fold_in(key, i)`, so the first words do not depend on `num` as long as the
    batch size is the same.
    """
    check_sampling_args(vocab, num, temperature, top_k, prefix)
    if max_len <= 0:
        raise UserError(f"--max_len must be > 0, got {max_len}")
    batch = min(num, batch_size)
    state_S, start = initial_state(layout, input_len, vocab, prefix, max_len)
    state_BxS = jnp.asarray(np.tile(np.asarray(state_S, np.int32), (batch, 1)))
    decode = not recompute and layout == "sequences" and spec_decodes(model)
    sampler = make_sampler(model, layout, input_len, max_len, start, vocab.boundary_id, decode)
    chunks = [
        sampler(
            variables,
            jax.random.fold_in(key, i),
            state_BxS,
            jnp.float32(temperature),
            jnp.int32(top_k),
        )
        for i in range(-(-num // batch))
    ]
    tokens_NxG = np.concatenate(jax.device_get(chunks))[:num]
    return [prefix + vocab.decode(row) for row in tokens_NxG]


def sample_words(
    trained: LoadedModel,
    key: jax.Array,
    num: int,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    prefix: str = "",
    max_len: int = 0,
    recompute: bool = False,
) -> list[str]:
    """`generate` for a trained model, which knows its own layout, input length and default
    `max_len` (0: the longest word of its data + 10): what `sample`, `train`'s printed samples
    and the Python API all draw with, so the same key and arguments give the same words."""
    if max_len < 0:
        raise UserError(f"--max_len must be >= 0, got {max_len}")
    return generate(
        trained.model, trained.variables, trained.vocab, key, num,
        layout=trained.layout, input_len=trained.input_len,
        max_len=max_len or trained.default_max_len, temperature=temperature, top_k=top_k,
        prefix=prefix, recompute=recompute,
    )  # fmt: skip


def next_char_probs(trained: LoadedModel, prefix: str = "") -> np.ndarray:
    """p_V: the model's distribution of the character after `prefix` (the boundary token's
    probability is that the word ends there), as the sampler's first step sees it at
    temperature 1: the window ending with `prefix`, or the word buffer's last L positions."""
    trained.vocab.check_known(prefix, f"prefix {prefix!r}")
    state_S, start = initial_state(trained.layout, trained.input_len, trained.vocab, prefix, 1)
    if trained.layout == "windows":
        row_1xT = np.asarray([state_S], np.int32)
        logits_V = trained.model.apply(trained.variables, row_1xT, train=False)[0]
    else:
        L = trained.input_len
        first = max(0, start - L)
        row_1xL = np.asarray([state_S[first : first + L]], np.int32)
        logits_V = trained.model.apply(trained.variables, row_1xL, train=False)[0, start - 1 - first]
    return np.asarray(jax.nn.softmax(logits_V.astype(jnp.float32)), np.float64)


def label_words(words: Sequence[str], train_words: set[str], heldout_words: set[str]) -> list[str]:
    """'in train', 'in val/test' or 'new' for each word (makemore's sample printout)."""
    return [
        "in train" if w in train_words else "in val/test" if w in heldout_words else "new"
        for w in words
    ]


def summarize(
    words: Sequence[str], train_words: set[str] | None, heldout_words: set[str] | None
) -> str:
    mean_len = sum(len(w) for w in words) / max(len(words), 1)
    if train_words is None or heldout_words is None:
        return f"{len(words)} words, mean length {mean_len:.2f} (data file not found: no new/seen counts)"
    labels = label_words(words, train_words, heldout_words)
    return (
        f"{len(words)} words: {labels.count('new')} new, {labels.count('in train')} in train, "
        f"{labels.count('in val/test')} in val/test; mean length {mean_len:.2f}"
    )


def main(argv: Sequence[str]) -> int:
    from jax_makemore.restore import load_trained

    parser = argparse.ArgumentParser(
        prog="python -m jax_makemore.sample", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--num", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument(
        "--top_k", type=int, default=0, help="keep the k most likely characters (0: all)"
    )
    parser.add_argument("--prefix", default="", help="start every word with these characters")
    parser.add_argument(
        "--max_len",
        type=int,
        default=0,
        help="cap on generated characters (0: longest word of the data + 10)",
    )
    parser.add_argument(
        "--recompute",
        action="store_true",
        help="recompute the whole word at every step instead of decoding from the cache",
    )
    args = parser.parse_args(argv)
    loaded = load_trained(args.workdir)
    words = sample_words(
        loaded, jax.random.PRNGKey(args.seed), args.num, temperature=args.temperature,
        top_k=args.top_k, prefix=args.prefix, max_len=args.max_len, recompute=args.recompute,
    )  # fmt: skip
    sys.stdout.write("".join(w + "\n" for w in words))
    sys.stdout.flush()
    print(summarize(words, loaded.train_words, loaded.heldout_words), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
