"""Write a synthetic word list of many scripts: millions of lines, thousands of characters.

    python scripts/make_big_wordlist.py OUT.txt [--lines 2400000] [--chars 11568] [--seed 0]

Each line is one word of 3-12 characters drawn from one of twelve writing systems (Latin with
diacritics, Greek, Cyrillic, Armenian, Hebrew, Arabic, Devanagari, Thai, Georgian, Hangul,
Hiragana/Katakana and CJK ideographs), the characters of a script Zipf-distributed, so that
the file has about `--chars` distinct characters, as a word list of twelve languages does.
Seeded: the same arguments write the same bytes. It is the input of the big-vocabulary
measurements in docs/experiments/big_vocabulary.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

#: (first code point, last code point) of each script's letters.
SCRIPTS = (
    (0x0061, 0x007A), (0x00E0, 0x024F), (0x03B1, 0x03C9), (0x0430, 0x045F),
    (0x0561, 0x0586), (0x05D0, 0x05EA), (0x0621, 0x064A), (0x0905, 0x0939),
    (0x0E01, 0x0E2E), (0x10D0, 0x10FA), (0xAC00, 0xD7A3), (0x3041, 0x30FA),
    (0x4E00, 0x9FFF),
)  # fmt: skip


def script_alphabets(num_chars: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Each script's characters: all of a small script's letters, and the large ones (Hangul,
    CJK) cut so that the alphabets hold about `num_chars` characters in all."""
    small = [np.arange(lo, hi + 1) for lo, hi in SCRIPTS if hi - lo < 1000]
    budget = max(num_chars - sum(len(a) for a in small), 2)
    large = [np.arange(lo, hi + 1) for lo, hi in SCRIPTS if hi - lo >= 1000]
    cut = [rng.choice(a, size=budget // len(large), replace=False) for a in large]
    return small + cut


def words(num_lines: int, num_chars: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    alphabets = script_alphabets(num_chars, rng)
    which_L = rng.integers(0, len(alphabets), num_lines)
    lengths_L = rng.integers(3, 13, num_lines)
    out = []
    for s, alphabet in enumerate(alphabets):
        rows = np.flatnonzero(which_L == s)
        p = 1.0 / np.arange(1, len(alphabet) + 1)  # Zipf: a few common, a long tail
        chars = rng.choice(alphabet, size=int(lengths_L[rows].sum()), p=p / p.sum())
        ends = np.cumsum(lengths_L[rows])
        for start, end in zip(np.concatenate([[0], ends[:-1]]), ends, strict=True):
            out.append("".join(map(chr, chars[start:end])))
    order = rng.permutation(len(out))
    return [out[i] for i in order]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--lines", type=int, default=2_400_000)
    parser.add_argument("--chars", type=int, default=11_568)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    lines = words(args.lines, args.chars, args.seed)
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    distinct = len(set("".join(lines)))
    print(f"{args.out}: {len(lines):,} lines, {distinct:,} distinct characters")


if __name__ == "__main__":
    main()
