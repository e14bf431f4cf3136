"""`python -m jax_makemore.sample --workdir DIR`: seeded, batched sampling from a trained model.

Words go to stdout one per line; a summary (new / in train / in val/test, mean length, draws)
goes to stderr. The decode loop is `decode.py` (draw, step, stop at the boundary token or the
cap); `sample_speedups.py` runs it in shrinking phases on a growing cache, which changes no
word (`speedups=False`, the `--no_speedups` flag, runs the plain loop). A model whose spec
`decodes` draws from its cache up to its trained length L and recomputes past it;
`recompute=True` (`--recompute`) recomputes throughout: the same words, to float rounding.

Options that shape the words:

* `--min_len N` / `--max_len N`: no word shorter than N characters (the prefix counts) / with
  more than N generated characters, and within them the model's distribution renormalised:
  each word's probability is p(w) / Z over the words within the limits (exact conditioning,
  `length_limits.py`: a window model draws from a survival table and rejects nothing; a
  sequence model's words are drawn without limits and those outside redrawn as `--new`
  redraws). With neither, `max_len` is only a cap (the longest word of the data + 10) where a
  word would be cut.
* `--new` / `--unique` / `--exclude FILE`: words that are a line of the data file (or empty),
  repeat an earlier word, or are a line of FILE are dropped and redrawn in further rounds, round r from
  `fold_in(key', r)`, so the same seed gives the same words; at most MAX_ROUNDS rounds of N
  draws each (`TooFewWords` when they do not give N words).
* `--top N`: the N most likely words instead of samples (`search.most_likely`).

BatchNorm uses its running statistics (eval mode), dropout is off. The same workdir, seed and
flags print the same words.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from jax_makemore import decode, length_limits, sample_speedups
from jax_makemore.data import Vocab, read_words
from jax_makemore.decode import initial_state
from jax_makemore.errors import UserError, run_cli
from jax_makemore.models.base import ModelSpec
from jax_makemore.prefix_probs import next_char_logprobs
from jax_makemore.restore import LoadedModel, default_max_len
from jax_makemore.search import excluded_words, most_likely_search

__all__ = ["default_max_len", "generate", "next_char_probs", "sample_words", "TooFewWords"]

#: The largest batch generated in one compiled call; larger requests run in several calls.
MAX_SAMPLE_BATCH = 10_000
#: Rounds of redrawing for --new / --unique / --exclude: at most MAX_ROUNDS x N draws in all.
MAX_ROUNDS = 100
#: The key of redraw round r >= 1 is fold_in(fold_in(key, _REDRAW_SALT), r).
_REDRAW_SALT = 0x5EED


class TooFewWords(UserError):
    """The redraw rounds ran out before N words passed the filters; `.words` holds those
    that did, `.draws` how many words were drawn."""

    def __init__(self, message: str, words: list[str], draws: int) -> None:
        super().__init__(message)
        self.words, self.draws = words, draws


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


def check_lengths(prefix: str, min_len: int, max_len: int) -> None:
    """One-line errors for length limits no word can meet (max_len counts generated
    characters, min_len the whole word's)."""
    if max_len <= 0:
        raise UserError(f"--max_len must be > 0, got {max_len}")
    if min_len < 0:
        raise UserError(f"--min_len must be >= 0, got {min_len}")
    if min_len > len(prefix) + max_len:
        raise UserError(
            f"--min_len {min_len} exceeds the prefix's {len(prefix)} characters plus "
            f"--max_len {max_len}: no word fits; raise --max_len or lower --min_len"
        )


def generate_batches(
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
    spec: ModelSpec | None = None,
    recompute: bool = False,
    speedups: bool = True,
) -> Iterator[list[str]]:
    """`generate`'s words batch by batch, each fetched from the device as soon as it is drawn
    while the next batch is already running: a caller can write them as they come, in memory
    that does not grow with `num`.

    `num` words, each `prefix` + up to `max_len` generated characters (a cap: a word that
    reaches it is cut there), from a model of `layout` that reads `input_len` positions
    (models.input_length).

    A sequences model whose `spec` declares `decodes` draws from its cache up to L positions,
    unless `recompute` (no spec: recompute). `speedups=False` runs `decode.py`'s plain loop
    instead of the phases (the same words). Batch i draws from `fold_in(key, i)` and its word
    b from `fold_in(fold_in(key, i), b)`, so the first words do not depend on `num` as long as
    the batch size is the same.
    """
    check_sampling_args(vocab, num, temperature, top_k, prefix)
    check_lengths(prefix, 0, max_len)
    batch = min(num, batch_size)
    state_S, start = initial_state(layout, input_len, vocab, prefix, max_len)
    state_BxS = jnp.asarray(np.tile(np.asarray(state_S, np.int32), (batch, 1)))
    decodes = spec is not None and spec.decodes
    use_cache = not recompute and layout == "sequences" and decodes
    make = (sample_speedups if speedups else decode).make_sampler
    sampler = make(model, layout, input_len, max_len, start, vocab.boundary_id, use_cache)
    knobs = decode.Knobs(jnp.float32(temperature), jnp.int32(top_k))
    num_batches = -(-num // batch)

    def launch(i: int) -> jax.Array:  # dispatched asynchronously: the device runs ahead
        return sampler(variables, jax.random.fold_in(key, i), state_BxS, knobs)

    pending: jax.Array | None = launch(0)
    for i in range(num_batches):
        following = launch(i + 1) if i + 1 < num_batches else None
        tokens_BxG = np.asarray(jax.device_get(pending))[: num - i * batch]
        yield [prefix + vocab.decode(row) for row in tokens_BxG]
        pending = following


def generate(model: nn.Module, variables: Any, vocab: Vocab, key: jax.Array, num: int, **kw: Any):
    """`num` words (`generate_batches`'s, in one list): each `prefix` + up to `max_len`
    generated characters, from a model of `layout` that reads `input_len` positions."""
    return [w for words in generate_batches(model, variables, vocab, key, num, **kw) for w in words]


def read_exclude(path: str, trained: LoadedModel) -> list[str]:
    """The words of --exclude FILE, read in the model's data encoding."""
    return read_words(path, encoding=trained.config.get("encoding", "utf-8"))


class Drawn(NamedTuple):
    """Words that passed the filters, and how many words it took to draw them."""

    words: list[str]
    draws: int
    what: str = "the filters"  # the flags that rejected words


class Tally:
    """How many words a stream of batches drew, and how many it gave."""

    def __init__(self) -> None:
        self.draws = self.found = 0
        self.what = "the filters"  # the flags that rejected words, for the one-line error


class Filters(NamedTuple):
    """What a word must pass to be kept: not `banned`, not a repeat (`unique`), and within the
    length limits when they are met by rejection (`limits`, None: no such test)."""

    banned: set[str]
    unique: bool
    limits: length_limits.Limits | None
    prefix: str

    def any(self) -> bool:
        return bool(self.banned) or self.unique or self.limits is not None

    def named(self) -> str:
        """The flags that rejected words, for the one-line error."""
        return "/".join(["--new/--exclude"] * bool(self.banned) + ["--unique"] * self.unique
                        + ["--min_len/--max_len"] * (self.limits is not None))  # fmt: skip


def filtered_batches(
    round_batches, num: int, key: jax.Array, filters: Filters, tally: Tally
) -> Iterator[list[str]]:
    """Up to `num` words of `round_batches(key_r)` (batches of num words in all) that pass
    `filters`, batch by batch: round 0 from `key`, round r from fold_in(key', r), at most
    MAX_ROUNDS rounds."""
    seen = set(filters.banned)
    limits, prefix = filters.limits, filters.prefix
    salted = jax.random.fold_in(key, _REDRAW_SALT)
    for r in range(MAX_ROUNDS):
        for batch in round_batches(key if r == 0 else jax.random.fold_in(salted, r)):
            tally.draws += len(batch)
            kept = []
            for w in batch:
                if w in seen or (limits is not None and not limits.admits(w, prefix)):
                    continue
                kept.append(w)
                if filters.unique:
                    seen.add(w)
                if tally.found + len(kept) == num:
                    break
            tally.found += len(kept)
            yield kept
            if tally.found == num:
                return


def word_batches(
    trained: LoadedModel,
    key: jax.Array,
    num: int,
    tally: Tally,
    *,
    max_len: int,
    limits: length_limits.Limits | None = None,
    prefix: str = "",
    temperature: float = 1.0,
    top_k: int = 0,
    new: bool = False,
    unique: bool = False,
    exclude: Iterable[str] = (),
    batch_size: int = MAX_SAMPLE_BATCH,
    **kw: Any,
) -> Iterator[list[str]]:
    """`sample_words`'s words batch by batch as they are drawn; `tally` counts the draws.
    `limits`: length limits (None: `max_len` is only the cap), met from the survival table
    where the model's contexts can be listed, else by rejection."""
    banned = excluded_words(trained, new, exclude)
    table = None
    if limits is not None and length_limits.enumerable(trained):
        table = length_limits.build_table(trained, prefix, limits, temperature, top_k)
    rejecting = limits if limits is not None and table is None else None
    filters = Filters(banned, unique, rejecting, prefix)
    tally.what = filters.named()

    def round_batches(k: jax.Array) -> Iterator[list[str]]:
        if table is not None:
            return length_limits.conditioned_batches(
                trained, table, k, num, prefix=prefix, batch_size=batch_size
            )
        return generate_batches(
            trained.model, trained.variables, trained.vocab, k, num, layout=trained.layout,
            input_len=trained.input_len, spec=trained.spec, prefix=prefix,
            max_len=max_len + (rejecting is not None),  # one more: a word past the limit shows
            temperature=temperature, top_k=top_k, batch_size=batch_size, **kw,
        )  # fmt: skip

    if filters.any():
        yield from filtered_batches(round_batches, num, key, filters, tally)
        return
    for batch in round_batches(key):
        tally.draws += len(batch)
        tally.found += len(batch)
        yield batch


def stream_words(
    trained: LoadedModel,
    key: jax.Array,
    num: int,
    tally: Tally,
    *,
    max_len: int = 0,
    min_len: int = 0,
    prefix: str = "",
    temperature: float = 1.0,
    top_k: int = 0,
    **kw: Any,
) -> Iterator[list[str]]:
    """The batches of `sample_words` (up to `num` words, fewer when the rounds run out). Length
    limits apply when `min_len` exceeds the prefix or `max_len` is given (> 0)."""
    if max_len < 0:
        raise UserError(f"--max_len must be >= 0, got {max_len}")
    check_sampling_args(trained.vocab, num, temperature, top_k, prefix)
    most = max_len or trained.default_max_len
    check_lengths(prefix, min_len, most)
    limited = max_len > 0 or min_len > len(prefix)
    limits = length_limits.limits_for(prefix, min_len, most) if limited else None
    return word_batches(
        trained, key, num, tally, max_len=most, limits=limits, prefix=prefix,
        temperature=temperature, top_k=top_k, **kw,
    )  # fmt: skip


def sample_drawn(trained: LoadedModel, key: jax.Array, num: int, **kw: Any) -> Drawn:
    """`sample_words`'s words (up to `num`, fewer when the rounds run out) and their draws."""
    tally = Tally()
    words = [w for batch in stream_words(trained, key, num, tally, **kw) for w in batch]
    return Drawn(words, tally.draws, tally.what)


def too_few(
    found: int, draws: int, num: int, temperature: float, words=(), what: str = "the filters"
) -> TooFewWords:
    """The one-line error of a request the rounds could not fill: how many, what to change."""
    return TooFewWords(
        f"only {found} of {num} words passed {what} in {draws} draws "
        f"({MAX_ROUNDS} rounds of {num}); ask for fewer (--num), or widen the distribution "
        f"(--temperature above {temperature}, --top_k 0)",
        list(words),
        draws,
    )


def enough(drawn: Drawn, num: int, temperature: float) -> list[str]:
    """The words, or `TooFewWords` (one line: how many, and what to change)."""
    if len(drawn.words) < num:
        raise too_few(len(drawn.words), drawn.draws, num, temperature, drawn.words, drawn.what)
    return drawn.words


def sample_words(
    trained: LoadedModel,
    key: jax.Array,
    num: int,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    prefix: str = "",
    max_len: int = 0,
    min_len: int = 0,
    recompute: bool = False,
    speedups: bool = True,
    new: bool = False,
    unique: bool = False,
    exclude: Iterable[str] = (),
) -> list[str]:
    """`generate` for a trained model, which knows its own layout, input length, spec and
    cap (the longest word of its data + 10): what `sample`, `train`'s printed samples and the
    Python API all draw with, so the same key and arguments give the same words. `min_len` /
    `max_len` (> 0): whole words within the limits, from the model's distribution
    renormalised over them (module docstring). `new`: no word of the data file; `unique`: no word twice; `exclude`: none of these
    words; the rejected ones are redrawn (module docstring). Raises `TooFewWords` (with the
    words found) when MAX_ROUNDS rounds do not give `num`."""
    drawn = sample_drawn(
        trained, key, num, temperature=temperature, top_k=top_k, prefix=prefix,
        max_len=max_len, min_len=min_len, recompute=recompute, speedups=speedups, new=new,
        unique=unique, exclude=exclude,
    )  # fmt: skip
    return enough(drawn, num, temperature)


def next_char_probs(trained: LoadedModel, prefix: str = "") -> np.ndarray:
    """p_V: the model's distribution of the character after `prefix` (the boundary token's
    probability is that the word ends there), as the sampler's first step sees it at
    temperature 1: the window ending with `prefix`, or the word buffer's last L positions."""
    trained.vocab.check_known(prefix, f"prefix {prefix!r}")
    return np.exp(next_char_logprobs(trained, [prefix])[0])


def label_words(words: Sequence[str], train_words: set[str], heldout_words: set[str]) -> list[str]:
    """'in train', 'in val/test' or 'new' for each word (makemore's sample printout)."""
    return [
        "in train" if w in train_words else "in val/test" if w in heldout_words else "new"
        for w in words
    ]


class Summary:
    """The stderr summary of a stream of words, counted batch by batch (no word is kept)."""

    def __init__(self, train_words: set[str] | None, heldout_words: set[str] | None) -> None:
        self.train_words, self.heldout_words = train_words, heldout_words
        self.words = self.chars = 0
        self.counts = {"new": 0, "in train": 0, "in val/test": 0}

    def add(self, words: Sequence[str]) -> None:
        self.words += len(words)
        self.chars += sum(len(w) for w in words)
        if self.train_words is not None and self.heldout_words is not None:
            for label in label_words(words, self.train_words, self.heldout_words):
                self.counts[label] += 1

    def line(self) -> str:
        mean_len = self.chars / max(self.words, 1)
        if self.train_words is None or self.heldout_words is None:
            return f"{self.words} words, mean length {mean_len:.2f} (data file not found: no new/seen counts)"
        c = self.counts
        return (
            f"{self.words} words: {c['new']} new, {c['in train']} in train, "
            f"{c['in val/test']} in val/test; mean length {mean_len:.2f}"
        )


def summarize(
    words: Sequence[str], train_words: set[str] | None, heldout_words: set[str] | None
) -> str:
    summary = Summary(train_words, heldout_words)
    summary.add(words)
    return summary.line()


def sampling_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m jax_makemore.sample", description=__doc__.splitlines()[0]
    )
    add = parser.add_argument
    add("--workdir", required=True)
    add("--num", type=int, default=20)
    add("--seed", type=int, default=0)
    add("--temperature", type=float, default=1.0)
    add("--top_k", type=int, default=0, help="keep the k most likely characters (0: all)")
    add("--prefix", default="", help="start every word with these characters")
    add("--max_len", type=int, default=0,
        help="no word with more than N generated characters, drawn from the model's "
        "distribution renormalised over the words within the limits (0: no limit; the cap is "
        "the longest word of the data + 10)")  # fmt: skip
    add("--min_len", type=int, default=0,
        help="no word shorter than N characters (the prefix counts), drawn as --max_len")  # fmt: skip
    add("--new", action="store_true",
        help=f"only words that are not a line of the data file (nor empty), redrawn in rounds of --num "
        f"draws, at most {MAX_ROUNDS} rounds ({MAX_ROUNDS} x N draws); exit 2 if short")  # fmt: skip
    add("--unique", action="store_true", help="no word twice (redrawn as --new)")
    add("--exclude", metavar="FILE", help="drop the words of FILE too (redrawn as --new)")
    add("--top", type=int, default=0, metavar="N",
        help="print the N most likely words (not the empty one) with their NLL instead of samples: exact "
        "best-first search within a budget of expansions, else beam search (search.py)")  # fmt: skip
    add("--recompute", action="store_true",
        help="recompute the whole word at every step instead of decoding from the cache")  # fmt: skip
    add("--no_speedups", action="store_true",
        help="run the plain decode loop, without phases or growing cache (the same words)")  # fmt: skip
    return parser


def print_top(loaded: LoadedModel, args: argparse.Namespace) -> int:
    """--top N: the most likely words, `word<TAB>nll`, most likely first."""
    found = most_likely_search(
        loaded, args.top, prefix=args.prefix, new=args.new, min_len=args.min_len,
        max_len=args.max_len, exclude=read_exclude(args.exclude, loaded) if args.exclude else (),
    )  # fmt: skip
    sys.stdout.write("".join(f"{w}\t{nll:.4f}\n" for w, nll in found.words))
    sys.stdout.flush()
    print(found.summary, file=sys.stderr)
    return 0


def main(argv: Sequence[str]) -> int:
    from jax_makemore.restore import load_trained

    args = sampling_parser().parse_args(argv)
    loaded = load_trained(args.workdir)
    if args.top:
        return print_top(loaded, args)
    exclude = read_exclude(args.exclude, loaded) if args.exclude else ()
    tally, summary = Tally(), Summary(loaded.train_words, loaded.heldout_words)
    batches = stream_words(
        loaded, jax.random.PRNGKey(args.seed), args.num, tally, temperature=args.temperature,
        top_k=args.top_k, prefix=args.prefix, max_len=args.max_len, min_len=args.min_len,
        recompute=args.recompute, speedups=not args.no_speedups, new=args.new,
        unique=args.unique, exclude=exclude,
    )  # fmt: skip
    try:
        for words in batches:  # each batch written as it is drawn: `| head` prints at once
            sys.stdout.write("".join(w + "\n" for w in words))
            sys.stdout.flush()
            summary.add(words)
    except BrokenPipeError:  # the reader closed the pipe (`| head`): it has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    print(f"{summary.line()}; {tally.draws} draws", file=sys.stderr)
    if tally.found < args.num:  # exit 2 when short, after the words
        raise too_few(tally.found, tally.draws, args.num, args.temperature, what=tally.what)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
