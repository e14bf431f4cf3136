"""The sampler's speed-ups over `decode.py`'s plain loop, which change no word.

* Shrinking phases: once at most 1/_SHRINK of a phase's rows are still generating, they move
  to a batch 1/_SHRINK the size (`phase_sizes`, `keep_rows`), so that the few long words (names
  are ~7 characters, max_len ~25) do not keep a large batch running, above all past L, where
  every step recomputes L positions of every row. The cache rows go with their words.
* A growing cache: where a cache's size grows with the positions it holds (the Transformer's
  keys and values), the first phase starts on a quarter of L and grows it as the steps need
  (`cache_lengths`, `grown`); later phases hold the full length.

Each row draws from its own key (`decode.draw`) and a slot not yet written is zero in any
cache, so a word is the same whichever phase and cache size it is drawn in: `make_sampler`
gives the plain loop's words, to float rounding.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from jax_makemore.decode import (
    Carry,
    cached_steps,
    drawing_step,
    prefilled_cache,
    row_keys,
    run_steps,
    step_logits,
)
from jax_makemore.models.base import init_cache

#: Phases shrink by _SHRINK, down to _MIN_PHASE_BATCH rows. A batch shrinks at all only if its
#: second phase would have _FIRST_SHRINK_MIN rows: a smaller batch is one phase, whose
#: compilation more phases would lengthen by more than they save.
_SHRINK = 4
_MIN_PHASE_BATCH = 16
_FIRST_SHRINK_MIN = 512


def phase_sizes(batch: int) -> list[int]:
    """Batch sizes of the generation phases for a batch of `batch` words, largest first."""
    sizes = [batch]
    while batch // _SHRINK >= _FIRST_SHRINK_MIN and sizes[-1] // _SHRINK >= _MIN_PHASE_BATCH:
        sizes.append(-(-sizes[-1] // _SHRINK))
    return sizes


def keep_rows(carry: Carry, R: int) -> Carry:
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


def cache_shapes(model: nn.Module, variables: Any, rows: int, length: int) -> Any:
    """The shapes and dtypes of the cache of `rows` rows for `length` positions."""
    return jax.eval_shape(lambda v: init_cache(model, v, rows, length), variables)


def cache_lengths(
    model: nn.Module, variables: Any, input_len: int, start: int, decode_until: int
) -> tuple[int, ...]:
    """The positions the cache holds in each stage of the first phase, the last of them the
    full cache that later phases keep.

    The cached steps feed positions up to start - 2 + decode_until, so the full cache holds
    start - 1 + decode_until (L at most). Where a cache's size grows with its length (not a
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


def grown(carry: Carry, length: int, *, model: nn.Module, variables: Any) -> Carry:
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


def run_phases(
    carry: Carry,
    steps: Callable[[Carry, int, bool, int], Carry],
    grow: Callable[[Carry, int], Carry],
    sizes: Sequence[int],
    lengths: tuple[int, ...],
    *,
    decode_until: int,
    max_len: int,
    start: int,
) -> Carry:
    """Every phase of the batch: `sizes` rows each (then 0), phase i's steps from the cache
    while they can (`decode_until`) and then recomputing, its rows still generating moved to
    phase i + 1 (`keep_rows`), cache rows included.

    `steps(carry, i, from_cache, until)` runs phase i's steps up to `until`; `grow(carry, n)`
    gives the cache room for n positions. The first phase goes through the cache `lengths`:
    on each short cache while its steps last and more than sizes[1] rows are generating; then
    on to the next length if they still are, else to the next phase, whose cache (that of
    every later phase) has the last, full length."""

    def phase(carry: Carry, i: int) -> Carry:
        if decode_until:
            carry = steps(carry, i, True, decode_until)
        return steps(carry, i, False, max_len)

    def moved(carry: Carry, i: int) -> Carry:  # the rows of phase i + 1, the full cache
        carry = keep_rows(carry, sizes[i + 1]) if sizes[i + 1] else carry
        return grow(carry, lengths[-1])

    def first_phase(carry: Carry, stages: tuple[int, ...]) -> Carry:
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
    model: nn.Module, layout: str, input_len: int, max_len: int, start: int, boundary_id: int,
    decode: bool = False,
) -> Callable[..., jax.Array]:  # fmt: skip
    """`decode.make_sampler`'s generator, `(variables, key, state_BxS, knobs) -> tokens_BxG`,
    run in shrinking phases on a growing cache: the same words, faster for large batches."""
    recompute, cached = step_logits(model, layout, input_len, start)
    decode_until = min(cached_steps(input_len, start, decode), max_len)
    run = functools.partial(run_steps, layout=layout, start=start, boundary_id=boundary_id)

    @jax.jit
    def sample_tokens(variables, key, state_BxS, knobs):
        B = state_BxS.shape[0]
        sizes = [*phase_sizes(B), 0]  # 0: no phase after the last
        lengths = cache_lengths(model, variables, input_len, start, decode_until)
        lengths = lengths if len(sizes) > 2 else lengths[-1:]  # a small batch: no stages
        keys_B = row_keys(key, B)
        step = functools.partial(drawing_step, variables=variables, keys_B=keys_B, knobs=knobs)

        def steps(carry: Carry, i: int, from_cache: bool, until: int) -> Carry:
            s = step(cached if from_cache else recompute)
            return run(carry, until, s, leave_at=sizes[i + 1], rows_in_order=i == 0)

        cache = None
        if decode_until:
            cache = prefilled_cache(model, variables, state_BxS, lengths[0], start)
        tokens_GxB = jnp.full((max_len, B), boundary_id, jnp.int32)
        carry = Carry(jnp.int32(0), state_BxS, cache, jnp.arange(B), jnp.zeros(B, bool), tokens_GxB)
        grow = functools.partial(grown, model=model, variables=variables)
        phases = dict(decode_until=decode_until, max_len=max_len, start=start)
        return run_phases(carry, steps, grow, sizes, lengths, **phases).tokens_GxB.T

    return sample_tokens
