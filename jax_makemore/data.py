"""Text file -> words -> Vocab -> seeded splits -> context windows (X_NxT, Y_N).

A data file holds one item ("word") per line. The vocabulary is the sorted set of characters
plus one boundary token, placed last, that both pads the start context and ends every word.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jax_makemore.errors import UserError

#: Printed boundary token when '.' is taken by the data; the first unused one is chosen.
BOUNDARY_CANDIDATES = ".|#~^$_*@+=%&!;:/·§¶"

#: Longest line accepted; a longer one is refused by name rather than risking memory.
MAX_WORD_LENGTH = 10_000


def read_words(path: str | Path, max_word_length: int = MAX_WORD_LENGTH) -> list[str]:
    """Read a UTF-8 text file into its non-empty lines, stripped of surrounding whitespace."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"data file '{path}' does not exist")
    if path.is_dir():
        raise UserError(f"data file '{path}' is a directory, not a text file")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError(
            f"data file '{path}' is not UTF-8 (invalid byte 0x{raw[err.start]:02x} "
            f"at offset {err.start})"
        ) from None
    words = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        word = line.strip()
        if not word:
            continue
        if len(word) > max_word_length:
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

    @property
    def stoi(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.chars)}

    def unknown_chars(self, text: str) -> list[str]:
        """Characters of `text` that are not in the vocabulary (in order, without repeats)."""
        known = set(self.chars)
        return list(dict.fromkeys(c for c in text if c not in known))

    def encode(self, word: str) -> list[int]:
        """Character ids of `word` (no boundary tokens). Unknown characters are a UserError."""
        unknown = self.unknown_chars(word)
        if unknown:
            shown = ", ".join(repr(c) for c in unknown)
            raise UserError(f"{shown} not in the vocabulary of the training data (in {word!r})")
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


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Everything training needs from a data file: vocab, split words, and context windows."""

    path: Path
    vocab: Vocab
    words: tuple[list[str], list[str], list[str]]
    windows: tuple[tuple[np.ndarray, np.ndarray], ...]

    SPLITS = ("train", "val", "test")

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        return self.windows[self.SPLITS.index(name)]


def load_dataset(
    path: str | Path,
    block_size: int,
    seed: int,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    vocab: Vocab | None = None,
    max_word_length: int = MAX_WORD_LENGTH,
) -> Dataset:
    """Read `path`, build (or reuse) the vocab, split by `seed`, and make context windows."""
    words = read_words(path, max_word_length)
    if vocab is None:
        vocab = Vocab.from_words(words)
    else:
        unknown = vocab.unknown_chars("".join(words))
        if unknown:
            shown = ", ".join(repr(c) for c in unknown[:10])
            raise UserError(
                f"data file '{path}' has characters not in the trained vocabulary: {shown}"
            )
    splits = split_words(words, seed, fractions)
    if not splits[0]:
        raise UserError(
            f"the training split of '{path}' has no words; use more data or a larger train fraction"
        )
    windows = tuple(context_windows(s, vocab, block_size) for s in splits)
    return Dataset(path=Path(path), vocab=vocab, words=splits, windows=windows)


def dataset_from_config(config: Any, vocab: Vocab | None = None) -> Dataset:
    """`load_dataset` with a config's data keys (data_path, block_size, seed, split_fractions,
    max_word_length): how training, evaluation, lr_find and the bench all see the same splits."""
    return load_dataset(
        config.data_path,
        config.block_size,
        config.seed,
        config.split_fractions,
        vocab=vocab,
        max_word_length=config.max_word_length,
    )
