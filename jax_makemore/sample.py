"""`python -m jax_makemore.sample --workdir DIR`: seeded, batched sampling from a trained model.

Words go to stdout one per line; a summary (new / in train / in val/test, mean length) goes to
stderr. Generation is one compiled `lax.while_loop` per batch shape, for both data layouts:

* windows: the model reads a `block_size` context that slides one character per step;
* sequences: the model reads a padded word buffer that starts with the boundary token at
  position 0, exactly as in training, and the logits at the last filled position give the next
  character; past the model's `seq_len` the buffer's window slides (as makemore.py crops).

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
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from jax_makemore.data import Vocab
from jax_makemore.errors import UserError, run_cli
from jax_makemore.models import input_length

#: The largest batch generated in one compiled call; larger requests run in several calls.
MAX_SAMPLE_BATCH = 10_000


#: Generation runs in phases of shrinking batch size: once at most 1/_SHRINK of a phase's rows
#: are still generating, they move to a batch 1/_SHRINK the size, so the long tail of a few long
#: words does not pay for the whole batch (names are ~7 characters, max_len is ~25).
_SHRINK = 4
_MIN_PHASE_BATCH = 512
#: Up to this vocabulary size, top-k ranks logits by counting (B*V*V compares, vectorised);
#: above it, by a sort. On a CPU the count is ~50x faster than a sort for 27 characters.
_RANK_BY_COUNT_MAX_VOCAB = 64


def phase_sizes(batch: int) -> list[int]:
    """Batch sizes of the generation phases for a batch of `batch` words, largest first."""
    sizes = [batch]
    while sizes[-1] // _SHRINK >= _MIN_PHASE_BATCH:
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


def default_max_len(longest_word: int) -> int:
    """Cap on generated characters when none is given: the longest word of the data + 10."""
    return longest_word + 10


@functools.lru_cache(maxsize=16)
def make_sampler(
    model: nn.Module, layout: str, input_len: int, max_len: int, start: int, boundary_id: int
):
    """A jitted `(variables, key, state_BxS, temperature, top_k) -> tokens_BxG` generator.

    `state_BxS` is the context window (windows layout) or the word buffer (sequences layout,
    `start` = its number of filled positions: the boundary token and the prefix), of which the
    model reads `input_len` positions (its window width, or its padded word length). Temperature
    and top_k are traced, so one compilation serves every value; top_k <= 0 or >= vocab size
    means no truncation. Step t draws `jax.random.categorical(fold_in(key, t), logits)` for the
    rows still generating; which rows those are depends only on earlier steps, so every word is
    an exact sample from the model, and the same key gives the same words. Cached: the same
    model and shape reuse one compiled sampler.
    """

    def logits_of(variables, t, state_RxS):
        if layout == "windows":
            return model.apply(variables, state_RxS, train=False)
        L, n = input_len, start + t  # n: filled positions of every row's buffer
        first = jnp.clip(n - L, 0, state_RxS.shape[1] - L)
        window_RxL = jax.lax.dynamic_slice_in_dim(state_RxS, first, L, axis=1)
        logits_RxLxV = model.apply(variables, window_RxL, train=False)
        return jax.lax.dynamic_index_in_dim(logits_RxLxV, n - 1 - first, axis=1, keepdims=False)

    def advance(t, state_RxS, next_R):
        if layout == "windows":
            return jnp.concatenate([state_RxS[:, 1:], next_R[:, None]], axis=1)
        return jax.lax.dynamic_update_index_in_dim(state_RxS, next_R, start + t, axis=1)

    @jax.jit
    def sample_tokens(variables, key, state_BxS, temperature, top_k):
        B = state_BxS.shape[0]
        # time-major, so that step t writes one contiguous row; transposed on return
        tokens_GxB = jnp.full((max_len, B), boundary_id, jnp.int32)

        def next_tokens(t, state_RxS):
            logits_RxV = logits_of(variables, t, state_RxS) / temperature
            V = logits_RxV.shape[-1]
            truncate = (top_k > 0) & (top_k < V)  # lax.cond: no ranking work when top-k is off
            logits_RxV = jax.lax.cond(
                truncate, top_k_logits, lambda logits, _: logits, logits_RxV, top_k
            )
            return jax.random.categorical(jax.random.fold_in(key, t), logits_RxV).astype(jnp.int32)

        sizes = phase_sizes(B)
        t = jnp.int32(0)
        state_RxS, rows_R, done_R = state_BxS, jnp.arange(B), jnp.zeros((B,), bool)
        for i, R in enumerate(sizes):
            if i > 0:  # the rows still generating first, then keep R of them (all, by the cond)
                order_R = jnp.argsort(done_R, stable=True)[:R]
                state_RxS, rows_R, done_R = state_RxS[order_R], rows_R[order_R], done_R[order_R]
            leave_at = sizes[i + 1] if i + 1 < len(sizes) else 0

            def cond(carry, leave_at=leave_at):
                t, _, _, done_R, _ = carry
                return (t < max_len) & (jnp.sum(~done_R) > leave_at)

            def body(carry, first=i == 0):
                t, state_RxS, rows_R, done_R, tokens_GxB = carry
                next_R = jnp.where(done_R, boundary_id, next_tokens(t, state_RxS))
                if first:
                    tokens_GxB = tokens_GxB.at[t].set(next_R)
                else:  # finished rows only rewrite the boundary token their word already has
                    tokens_GxB = tokens_GxB.at[t, rows_R].set(next_R, unique_indices=True)
                state_RxS = advance(t, state_RxS, next_R)
                return t + 1, state_RxS, rows_R, done_R | (next_R == boundary_id), tokens_GxB

            t, state_RxS, rows_R, done_R, tokens_GxB = jax.lax.while_loop(
                cond, body, (t, state_RxS, rows_R, done_R, tokens_GxB)
            )
        return tokens_GxB.T

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
) -> list[str]:
    """`num` words, each `prefix` + up to `max_len` generated characters, from a model of
    `layout` (its spec's) that reads `input_len` positions (models.input_length).

    Batch i draws from `fold_in(key, i)`, so the first words do not depend on `num` as long as
    the batch size is the same.
    """
    check_sampling_args(vocab, num, temperature, top_k, prefix)
    if max_len <= 0:
        raise UserError(f"--max_len must be > 0, got {max_len}")
    batch = min(num, batch_size)
    state_S, start = initial_state(layout, input_len, vocab, prefix, max_len)
    state_BxS = jnp.asarray(np.tile(np.asarray(state_S, np.int32), (batch, 1)))
    sampler = make_sampler(model, layout, input_len, max_len, start, vocab.boundary_id)
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
    args = parser.parse_args(argv)
    if args.max_len < 0:
        raise UserError(f"--max_len must be >= 0, got {args.max_len}")
    loaded = load_trained(args.workdir)
    words = generate(
        loaded.model,
        loaded.variables,
        loaded.vocab,
        jax.random.PRNGKey(args.seed),
        args.num,
        layout=loaded.spec.layout,
        input_len=input_length(loaded.config.model, loaded.seq_len),
        max_len=args.max_len or default_max_len(loaded.seq_len - 1),
        temperature=args.temperature,
        top_k=args.top_k,
        prefix=args.prefix,
    )
    sys.stdout.write("".join(w + "\n" for w in words))
    sys.stdout.flush()
    print(summarize(words, loaded.train_words, loaded.heldout_words), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
