"""`python -m jax_makemore.evaluate --workdir DIR [--split S] [--data PATH] [--score WORD ...]`.

Prints JSON on stdout: the split losses (mean NLL per character, the end token included, as in
training and results.json), the loss on another file scored with the trained vocabulary, or each
scored word's total NLL and NLL per character ("how name-like is this?").
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import numpy as np

from jax_makemore.data import context_windows, dataset_from_config, read_words
from jax_makemore.errors import UserError, run_cli
from jax_makemore.train import LoadedModel, evaluate_loss, load_trained, make_eval_step

SPLITS = ("train", "val", "test")


def split_losses(loaded: LoadedModel, splits: Sequence[str] = SPLITS) -> dict[str, float | None]:
    """Mean NLL of each split of the training data, re-split exactly as in training."""
    c = loaded.config
    ds = dataset_from_config(c, vocab=loaded.vocab)
    eval_step = make_eval_step(loaded.model)
    return {
        s: evaluate_loss(eval_step, loaded.variables, *ds.split(s), c.eval_batch_size)
        for s in splits
    }


def file_loss(loaded: LoadedModel, path: str) -> float:
    """Mean NLL per character of every word of another file, with the trained vocabulary."""
    words = read_words(path)
    unknown = loaded.vocab.unknown_chars("".join(words))
    if unknown:
        shown = ", ".join(repr(c) for c in unknown[:10])
        raise UserError(f"data file '{path}' has characters not in the trained vocabulary: {shown}")
    X, Y = context_windows(words, loaded.vocab, loaded.config.block_size)
    return evaluate_loss(
        make_eval_step(loaded.model), loaded.variables, X, Y, loaded.config.eval_batch_size
    )


def score_words(loaded: LoadedModel, words: Sequence[str]) -> list[dict]:
    """Total NLL and NLL per character (len(word) + 1 predictions, the end token included).

    All words' context windows go into one padded batch, and each word is its mask over it, so
    one compiled `eval_step` scores words of every length.
    """
    for word in words:
        loaded.vocab.encode(word)  # one-line error for characters outside the vocabulary
    X, Y = context_windows(words, loaded.vocab, loaded.config.block_size)
    padded = 1 << max(len(Y) - 1, 0).bit_length()  # a power of two: few distinct shapes
    X = np.concatenate([X, np.zeros((padded - len(Y), X.shape[1]), X.dtype)])
    Y = np.concatenate([Y, np.zeros((padded - len(Y),), Y.dtype)])
    eval_step = make_eval_step(loaded.model)
    out, start = [], 0
    for word in words:
        stop = start + len(word) + 1
        mask = (np.arange(padded) >= start) & (np.arange(padded) < stop)
        total = float(eval_step(loaded.variables, X, Y, mask))
        out.append({"word": word, "nll": total, "nll_per_char": total / (stop - start)})
        start = stop
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
