"""`python -m jax_makemore.evaluate --workdir DIR [--split S] [--data PATH] [--score WORD ...]`.

Prints JSON on stdout: the split losses (mean NLL per character, the end token included, as in
training and results.json), the loss on another file scored with the trained vocabulary, or each
scored word's total NLL and NLL per character ("how name-like is this?"). Works for every model
and both data layouts: a word is len(word) + 1 predictions either way.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import numpy as np

from jax_makemore.data import SPLITS, dataset_from_config, encode_words, read_words
from jax_makemore.errors import run_cli
from jax_makemore.loss import evaluate_loss, make_eval_step, make_row_nll, pad_rows
from jax_makemore.restore import LoadedModel, load_trained


def encode(loaded: LoadedModel, words: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """`words` in the model's layout; a word longer than a sequence model's trained length is
    a one-line error naming it."""
    block_size = loaded.config.model.get("block_size", 0)
    return encode_words(words, loaded.vocab, loaded.spec.layout, block_size, loaded.seq_len)


def split_losses(loaded: LoadedModel, splits: Sequence[str] = SPLITS) -> dict[str, float | None]:
    """Mean NLL of each split of the training data, re-split exactly as in training."""
    c = loaded.config
    ds = dataset_from_config(c, vocab=loaded.vocab, seq_len=loaded.seq_len)
    eval_step = make_eval_step(loaded.model)
    return {
        s: evaluate_loss(eval_step, loaded.variables, *ds.split(s), c.eval_batch_size)
        for s in splits
    }


def file_loss(loaded: LoadedModel, path: str) -> float:
    """Mean NLL per character of every word of another file, with the trained vocabulary."""
    words = read_words(path, loaded.config.max_word_length)
    loaded.vocab.check_known("".join(words), f"data file '{path}'")
    X, Y = encode(loaded, words)
    return evaluate_loss(
        make_eval_step(loaded.model), loaded.variables, X, Y, loaded.config.eval_batch_size
    )


def score_words(loaded: LoadedModel, words: Sequence[str]) -> list[dict]:
    """Total NLL and NLL per character (len(word) + 1 predictions, the end token included).

    All words go into one batch padded to a power of two (few distinct shapes, so few
    compilations); each row's NLL is summed, and a word's rows (its windows, or its one
    sequence row) add up to the word's NLL.
    """
    for word in words:
        loaded.vocab.encode(word)  # one-line error for characters outside the vocabulary
    X, Y = encode(loaded, words)
    rows_per_word = [len(w) + 1 if loaded.spec.layout == "windows" else 1 for w in words]
    padded = 1 << max(len(X) - 1, 0).bit_length()
    nll_R = np.asarray(make_row_nll(loaded.model)(loaded.variables, *pad_rows(X, Y, padded)))
    ends = np.cumsum(rows_per_word)
    out = []
    for word, stop, rows in zip(words, ends, rows_per_word, strict=True):
        total = float(np.sum(nll_R[stop - rows : stop], dtype=np.float64))
        out.append({"word": word, "nll": total, "nll_per_char": total / (len(word) + 1)})
    return out


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jax_makemore.evaluate", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--split", choices=(*SPLITS, "all"), default="all")
    parser.add_argument("--data", default=None, help="score every word of another file instead")
    parser.add_argument(
        "--score", nargs="+", default=None, metavar="WORD", help="score these words"
    )
    args = parser.parse_args(argv)
    loaded = load_trained(args.workdir)
    if args.score:
        result: object = score_words(loaded, args.score)
    elif args.data:
        result = {"data": args.data, "loss": file_loss(loaded, args.data)}
    else:
        result = split_losses(loaded, SPLITS if args.split == "all" else (args.split,))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
