"""Text file -> words -> Vocab -> seeded splits -> arrays in one of two layouts.

A data file holds one item ("word") per line. The vocabulary is the sorted set of characters
plus one boundary token, placed last, that both pads the start context and ends every word.

Layouts (a model's spec says which it trains on):

* `windows`: every (context window, next character) pair: X_NxT, Y_N (N examples, T the
  window width `block_size`); a word gives len(word) + 1 examples.
* `sequences`: one row per word, as makemore.py: X_NxL = [boundary] + ids + padding and
  Y_NxL = ids + [boundary] + [-1, ...] (L = longest word + 1; -1 marks targets that never
  count). A word gives len(word) + 1 counted targets, so per-character losses compare.
"""

from __future__ import annotations

import codecs
import dataclasses
import functools
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jax_makemore.errors import UserError
from jax_makemore.models import get_spec

#: Printed boundary token when '.' is taken by the data; the first unused one is chosen.
BOUNDARY_CANDIDATES = ".|#~^$_*@+=%&!;:/·§¶"

#: The three splits, in the order of `Dataset.words` and `Dataset.arrays`.
SPLITS = ("train", "val", "test")
#: The target of padding positions in the sequences layout: it never counts in a loss.
IGNORE = -1
#: Values of config key `split_by`: what the seeded shuffle cuts into train/val/test.
SPLIT_BY = ("word", "line")


def decode_text(path: Path, raw: bytes, encoding: str) -> str:
    """`raw` decoded, or a one-line error naming the line, the encoding tried and the key."""
    try:
        codec = codecs.lookup(encoding).name
    except LookupError:
        raise UserError(
            f"unknown encoding {encoding!r} (config key encoding; e.g. utf-8, cp1252, latin-1)"
        ) from None
    try:
        return raw.decode("utf-8-sig" if codec == "utf-8" else encoding)
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        name = "UTF-8" if codec == "utf-8" else encoding
        raise UserError(
            f"data file '{path}' line {line} is not {name} (invalid byte 0x{raw[err.start]:02x} "
            f"at offset {err.start}); name its encoding with --config.encoding (e.g. cp1252)"
        ) from None


def read_words(
    path: str | Path, max_word_length: int | None = None, encoding: str = "utf-8"
) -> list[str]:
    """Read a text file in `encoding` (config key `encoding`; for UTF-8 a byte-order mark at
    the start is dropped, as Python's utf-8-sig) into its non-empty lines, stripped of
    surrounding whitespace. A line longer than `max_word_length` (config key of the same name)
    is refused by name rather than risking memory."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"data file '{path}' does not exist")
    if path.is_dir():
        raise UserError(f"data file '{path}' is a directory, not a text file")
    text = decode_text(path, path.read_bytes(), encoding)
    words = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        word = line.strip()
        if not word:
            continue
        if max_word_length is not None and len(word) > max_word_length:
            raise UserError(
                f"data file '{path}' line {line_number} has {len(word)} characters; "
                f"the limit is {max_word_length} (config key max_word_length)"
            )
        words.append(word)
    if not words:
        raise UserError(f"data file '{path}' has no non-empty lines")
    return words


@dataclasses.dataclass(frozen=True)
class Vocab:
    """Sorted characters of the data plus a boundary token at index `size - 1`."""

    chars: tuple[str, ...]
    boundary: str = "."

    @classmethod
    def from_words(cls, words: Sequence[str]) -> Vocab:
        chars = tuple(sorted(set("".join(words))))
        boundary = next((c for c in BOUNDARY_CANDIDATES if c not in chars), None)
        if boundary is None:  # every candidate occurs in the data: take any unused code point
            boundary = next(chr(c) for c in range(0x2400, 0x10FFFF) if chr(c) not in chars)
        return cls(chars=chars, boundary=boundary)

    @property
    def size(self) -> int:
        return len(self.chars) + 1

    @property
    def boundary_id(self) -> int:
        return len(self.chars)

    @property
    def itos(self) -> tuple[str, ...]:
        return self.chars + (self.boundary,)

    @functools.cached_property
    def stoi(self) -> dict[str, int]:
        """Character -> id, built once per vocabulary (encoding a word is then O(len(word)),
        not O(vocabulary size))."""
        return {c: i for i, c in enumerate(self.chars)}

    def unknown_chars(self, text: str) -> list[str]:
        """Characters of `text` that are not in the vocabulary (in order, without repeats)."""
        known = self.stoi
        return list(dict.fromkeys(c for c in text if c not in known))

    def check_known(self, text: str, where: str) -> None:
        """A one-line UserError naming `where` (a file, a flag, a word) when `text` has
        characters outside the vocabulary."""
        unknown = self.unknown_chars(text)
        if unknown:
            shown = ", ".join(repr(c) for c in unknown[:10])
            raise UserError(f"{where} has characters not in the trained vocabulary: {shown}")

    def encode(self, word: str) -> list[int]:
        """Character ids of `word` (no boundary tokens). Unknown characters are a UserError."""
        self.check_known(word, f"{word!r}")
        stoi = self.stoi
        return [stoi[c] for c in word]

    def decode(self, ids: Sequence[int]) -> str:
        """Characters of `ids`, stopping at the first boundary token."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.boundary_id:
                break
            out.append(self.chars[i])
        return "".join(out)

    def to_json(self) -> str:
        return json.dumps({"chars": "".join(self.chars), "boundary": self.boundary})

    @classmethod
    def from_json(cls, text: str) -> Vocab:
        obj = json.loads(text)
        return cls(chars=tuple(obj["chars"]), boundary=obj["boundary"])


def check_split_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """Validate (train, val, test) fractions: three non-negative numbers summing to 1."""
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3:
        raise UserError(f"split_fractions must have 3 entries (train, val, test), got {fractions}")
    if any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise UserError(
            f"split_fractions {fractions} must be non-negative and sum to 1 (they sum to "
            f"{sum(fractions):g})"
        )
    if fractions[0] == 0:
        raise UserError(f"split_fractions {fractions} leave the training split empty")
    return fractions  # type: ignore[return-value]


def split_words(
    words: Sequence[str], seed: int, fractions: Sequence[float] = (0.8, 0.1, 0.1)
) -> tuple[list[str], list[str], list[str]]:
    """Shuffle the distinct words with `seed` and cut them into train/val/test.

    A word that occurs on several lines (a name given to girls and boys) stays in one split with
    all its occurrences, so no word is ever in two splits.
    """
    f_train, f_val, _ = check_split_fractions(fractions)
    distinct = list(dict.fromkeys(words))
    order = np.random.default_rng(seed).permutation(len(distinct))
    n_train = int(round(f_train * len(distinct)))
    n_val = int(round((f_train + f_val) * len(distinct))) - n_train
    counts: dict[str, int] = {}
    for word in words:
        counts[word] = counts.get(word, 0) + 1
    bounds = (n_train, n_train + n_val, len(distinct))
    splits, lo = [], 0
    for hi in bounds:  # words keep the shuffled order; repeats stay together
        splits.append([distinct[i] for i in order[lo:hi] for _ in range(counts[distinct[i]])])
        lo = hi
    return splits[0], splits[1], splits[2]


def split_lines(
    lines: Sequence[str], seed: int, fractions: Sequence[float] = (0.8, 0.1, 0.1)
) -> tuple[list[str], list[str], list[str]]:
    """The lectures' split: shuffle the lines as read (repeats kept) with
    `random.Random(seed)` and cut at `int(f_train * n)` and `int((f_train + f_val) * n)`.

    `random.seed(42); random.shuffle(words)`, as the lectures write it, draws the same sequence
    as `random.Random(42)`, so `seed=42` gives their train/val/test lists in their order. A
    word on several lines can land in several splits. The cumulative fraction is rounded to
    10 decimals so that it cuts where the literal a person writes does (0.7 + 0.2 is
    0.8999999999999999 in floating point; `int(0.9 * n)` is the rule).
    """
    f_train, f_val, _ = check_split_fractions(fractions)
    shuffled = list(lines)
    random.Random(seed).shuffle(shuffled)  # a private generator: no global RNG state
    n = len(shuffled)
    n1, n2 = int(f_train * n), int(round(f_train + f_val, 10) * n)
    return shuffled[:n1], shuffled[n1:n2], shuffled[n2:]


def split_data(
    words: Sequence[str],
    seed: int,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    split_by: str = "word",
) -> tuple[list[str], list[str], list[str]]:
    """train/val/test of `words` by config key `split_by`: "word" (`split_words`, no word in
    two splits) or "line" (`split_lines`, the lectures' procedure)."""
    if split_by == "word":
        return split_words(words, seed, fractions)
    if split_by == "line":
        return split_lines(words, seed, fractions)
    raise UserError(f"config key split_by={split_by!r}: expected {' or '.join(SPLIT_BY)}")


def context_windows(
    words: Sequence[str], vocab: Vocab, block_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """All (context, next character) pairs: X_NxT and Y_N, int32.

    Each word gives len(word) + 1 examples; the context starts as `block_size` boundary tokens
    and slides one character at a time; the last target is the boundary token.
    """
    if block_size < 1:
        raise UserError(f"block_size must be >= 1, got {block_size}")
    b = vocab.boundary_id
    if not words:
        return np.zeros((0, block_size), np.int32), np.zeros((0,), np.int32)
    stoi = vocab.stoi
    pieces, starts = [], []
    offset = 0
    for word in words:
        ids = [stoi[c] for c in word]
        seq = [b] * block_size + ids + [b]
        pieces.append(seq)
        starts.append(np.arange(offset, offset + len(ids) + 1))
        offset += len(seq)
    flat = np.fromiter((i for seq in pieces for i in seq), dtype=np.int32, count=offset)
    windows = np.lib.stride_tricks.sliding_window_view(flat, block_size + 1)
    chosen = windows[np.concatenate(starts)]
    return np.ascontiguousarray(chosen[:, :block_size]), np.ascontiguousarray(chosen[:, block_size])


def sequences(words: Sequence[str], vocab: Vocab, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """makemore.py's layout: X_NxL = [boundary] + ids + boundary padding, Y_NxL = ids +
    [boundary] + [IGNORE, ...], int32, one row per word; every word must fit (len < seq_len)."""
    b, stoi = vocab.boundary_id, vocab.stoi
    X_NxL = np.full((len(words), seq_len), b, np.int32)
    Y_NxL = np.full((len(words), seq_len), IGNORE, np.int32)
    for n, word in enumerate(words):
        if len(word) >= seq_len:
            raise UserError(
                f"word {word[:40]!r} has {len(word)} characters; the model reads words of at "
                f"most {seq_len - 1} (its trained sequence length is {seq_len})"
            )
        ids = [stoi[c] for c in word]
        X_NxL[n, 1 : len(ids) + 1] = ids
        Y_NxL[n, : len(ids)] = ids
        Y_NxL[n, len(ids)] = b
    return X_NxL, Y_NxL


def encode_words(
    words: Sequence[str], vocab: Vocab, layout: str, block_size: int = 0, seq_len: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """`words` as (X, Y) arrays of `layout`: context windows of `block_size`, or padded rows
    of `seq_len`."""
    if layout == "windows":
        return context_windows(words, vocab, block_size)
    return sequences(words, vocab, seq_len)


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Everything training needs from a data file: vocab, split words, and their arrays.

    `seq_len` is the padded row length of the sequences layout: the longest word of the file
    (or of the file a model was trained on, when restored) plus one.
    """

    path: Path
    vocab: Vocab
    words: tuple[list[str], list[str], list[str]]
    layout: str
    seq_len: int
    arrays: tuple[tuple[np.ndarray, np.ndarray], ...]

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        return self.arrays[SPLITS.index(name)]

    @property
    def longest_word(self) -> int:
        return self.seq_len - 1


def load_dataset(
    path: str | Path,
    seed: int,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    *,
    block_size: int | None = None,
    seq_len: int | None = None,
    vocab: Vocab | None = None,
    max_word_length: int | None = None,
    split_by: str = "word",
    encoding: str = "utf-8",
) -> Dataset:
    """Read `path`, build (or reuse) the vocab from every word, split by `seed` and `split_by`
    (`split_data`), and encode every split: as context windows when `block_size` is given, else
    as word rows of `seq_len` (default: the longest word of the file + 1; a restored model
    passes the length it was trained with)."""
    words = read_words(path, max_word_length, encoding)
    if vocab is None:
        vocab = Vocab.from_words(words)
    else:
        vocab.check_known("".join(words), f"data file '{path}'")
    splits = split_data(words, seed, fractions, split_by)
    if not splits[0]:
        raise UserError(
            f"the training split of '{path}' has no words; use more data or a larger train fraction"
        )
    if seq_len is None:
        seq_len = max(len(w) for w in words) + 1
    layout = "windows" if block_size is not None else "sequences"
    arrays = tuple(
        encode_words(s, vocab, layout, block_size=block_size or 0, seq_len=seq_len) for s in splits
    )
    return Dataset(Path(path), vocab, splits, layout, seq_len, arrays)


def dataset_from_config(
    config: Any, vocab: Vocab | None = None, seq_len: int | None = None
) -> Dataset:
    """`load_dataset` with a config's data keys (data_path, split_seed, split_fractions,
    split_by, max_word_length) in the layout of its model: how training, evaluation, lr_find, plot and
    the bench all see the same splits."""
    windows = get_spec(config.model.name).layout == "windows"
    return load_dataset(
        config.data_path,
        config.split_seed,
        config.split_fractions,
        block_size=config.model.block_size if windows else None,
        seq_len=seq_len,
        vocab=vocab,
        max_word_length=config.max_word_length,
        split_by=config.split_by,
        encoding=config.get("encoding", "utf-8"),  # checkpoints from before the key: UTF-8
    )
