"""`python -m jax_makemore.evaluate --workdir DIR [--split S] [--data PATH] [--score WORD ...]
[--mass]`, or `python -m jax_makemore.evaluate --ensemble DIR [DIR ...] [--split S]`.

Prints JSON on stdout: the split losses (mean NLL per character, the end token included, as in
training and results.json), the loss on another file scored with the trained vocabulary, or each
scored word's total NLL and NLL per character ("how name-like is this?"), or with `--mass` the
probability the model puts on the training words and on the held-out words (`split_masses`: the
exact expected shares of samples that copy a training name or hit a held-out one). Works for
every model and both data layouts: a word is len(word) + 1 predictions either way.

`--ensemble` scores the mixture of several trained models: each target's probability is the
mean over the members of softmax(logits), and the loss is the mean of -log of it over the same
targets as a single model's split loss. A DIR is a run directory (with `checkpoints/`) or a
sweep directory (with `sweep.json`: its members whose status is done and that have a
results.json, a sweep's seeds for instance). The members must share the data file, the split
(data_path, split_seed, split_fractions, split_by, max_word_length), the vocabulary and the
model input (the layout, and block_size for window models or seq_len for sequence models); the
architectures may differ. The JSON is

    {"members": [DIR, ...], "ensemble": {split: loss}, "single": {DIR: {split: loss}},
     "single_mean": {split: mean of the members' losses}}

so the gain of the ensemble over its members reads off directly. By Jensen's inequality the
ensemble's loss is at most `single_mean`.

Shape letters beyond the package's: M ensemble members, P target positions of one batch (B in
the windows layout, B*T in the sequences layout).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from jax_makemore import checkpoint as ckpt
from jax_makemore import rundir
from jax_makemore.config import DATA_KEYS
from jax_makemore.data import SPLITS, dataset_from_config, encode_words, read_words
from jax_makemore.errors import UserError, run_cli
from jax_makemore.loss import (
    batch_outputs,
    evaluate_loss,
    make_eval_step,
    make_row_nll,
    masked_nll_per_position,
    pad_rows,
)
from jax_makemore.restore import LoadedModel, load_trained
from jax_makemore.rundir import RESULTS_FILE, SWEEP_FILE


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
    loss = evaluate_loss(
        make_eval_step(loaded.model), loaded.variables, X, Y, loaded.config.eval_batch_size
    )
    assert loss is not None  # read_words refuses a file without words
    return loss


def word_nlls(loaded: LoadedModel, words: Sequence[str], chunk: int = 2048) -> np.ndarray:
    """Each word's total NLL (len(word) + 1 predictions, the end token included), float64.

    The words go in chunks of `chunk`, each padded to a power of two of rows (few distinct
    shapes, so few compilations); a word's rows (its windows, or its one sequence row) add up
    to the word's NLL.
    """
    row_nll = make_row_nll(loaded.model)
    out = np.zeros(len(words), np.float64)
    for lo in range(0, len(words), chunk):
        part = words[lo : lo + chunk]
        X, Y = encode(loaded, part)
        rows_per_word = [len(w) + 1 if loaded.spec.layout == "windows" else 1 for w in part]
        padded = 1 << max(len(X) - 1, 0).bit_length()
        nll_R = np.asarray(row_nll(loaded.variables, *pad_rows(X, Y, padded)), np.float64)
        starts = np.concatenate([[0], np.cumsum(rows_per_word)[:-1]])
        out[lo : lo + len(part)] = np.add.reduceat(nll_R[: len(X)], starts)
    return out


def score_words(loaded: LoadedModel, words: Sequence[str]) -> list[dict]:
    """Total NLL and NLL per character (len(word) + 1 predictions, the end token included)."""
    for word in words:
        loaded.vocab.encode(word)  # one-line error for characters outside the vocabulary
    return [
        {"word": word, "nll": float(nll), "nll_per_char": float(nll) / (len(word) + 1)}
        for word, nll in zip(words, word_nlls(loaded, words), strict=True)
    ]


def seen_word_preference(copies: float, heldout: float, n_train: int, n_heldout: int) -> float:
    """(share of samples in train / training words) over (share held out / held-out words):
    1 when a sampled name is as likely to be any one held-out name as any one training name;
    inf when no sample is a held-out word."""
    if not (n_train and n_heldout):
        return float("nan")
    return (copies / n_train) / (heldout / n_heldout) if heldout else float("inf")


def split_masses(loaded: LoadedModel) -> dict[str, Any]:
    """The probability the model gives the distinct words of the training split, and of the
    held-out splits (val and test, less any word also in train), summed: p(word) = exp(-NLL).

    A sample at temperature 1 is one of those words with exactly that probability, so these
    are the expected shares of samples that copy a training word or hit a held-out one, and
    their ratio per word the seen-word preference, without the noise of sampling. "new" is the
    rest. Needs the data file the model was trained on (unchanged), to re-cut the split.
    """
    if loaded.train_words is None or loaded.heldout_words is None:
        raise UserError(
            f"data file '{loaded.config.data_path}' is missing or changed since training: "
            "the split's words cannot be re-cut"
        )
    train = sorted(loaded.train_words)
    heldout = sorted(loaded.heldout_words - loaded.train_words)
    p_W = np.exp(-word_nlls(loaded, train + heldout))  # one pass: one compiled scorer
    mass_train, mass_heldout = float(np.sum(p_W[: len(train)])), float(np.sum(p_W[len(train) :]))
    return {
        "train": {"words": len(train), "mass": mass_train},
        "heldout": {"words": len(heldout), "mass": mass_heldout},
        "new": 1.0 - mass_train - mass_heldout,
        "preference": seen_word_preference(mass_train, mass_heldout, len(train), len(heldout)),
    }


# ---------------------------------------------------------------------------------------------
# Ensembles: the mixture of several trained models


def sweep_members(sweep_dir: Path) -> list[Path]:
    """The run directories of a sweep's finished members (status done in sweep.json, with a
    results.json), in sweep.json's order; none is a one-line error naming the sweep."""
    try:
        record = rundir.read_sweep(sweep_dir)
        entries = [(e["workdir"], e["status"]) for e in record["members"]]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise UserError(
            f"'{sweep_dir / SWEEP_FILE}' cannot be read ({type(err).__name__})"
        ) from err
    done = [sweep_dir / w for w, status in entries if status == "done"]
    done = [d for d in done if rundir.has_results(d)]
    if not done:
        raise UserError(
            f"sweep '{sweep_dir}' has no finished member (status done, with a {RESULTS_FILE})"
        )
    return done


def ensemble_dirs(dirs: Sequence[str | Path]) -> list[Path]:
    """Each of `dirs` as run directories: a run directory itself, a sweep directory as its
    finished members. No directory, one that is neither, or a run listed twice (it would
    count twice in the mean) is a one-line error naming it."""
    if not dirs:
        raise UserError("--ensemble needs at least one run or sweep directory")
    runs: list[Path] = []
    for d in map(Path, dirs):
        if rundir.is_sweep_dir(d):
            runs += sweep_members(d)
        elif ckpt.has_checkpoint(d):
            runs.append(d)
        else:
            raise UserError(
                f"'{d}' is neither a run directory (no checkpoints/) nor a sweep directory "
                f"(no {SWEEP_FILE})"
            )
    seen: dict[Path, Path] = {}
    for run in runs:
        if (first := seen.setdefault(run.resolve(), run)) is not run:
            raise UserError(f"run '{run}' is in the ensemble twice (also as '{first}')")
    return runs


def ensemble_key(loaded: LoadedModel) -> dict[str, Any]:
    """What every member of an ensemble must share so that the members predict the same
    targets from the same inputs: the split words, the vocabulary and the model input."""
    c = loaded.config
    key: dict[str, Any] = {k: c[k] for k in DATA_KEYS}
    key["vocab"] = "".join(loaded.vocab.chars) + loaded.vocab.boundary
    key["layout"] = loaded.spec.layout
    if loaded.spec.layout == "windows":
        key["model.block_size"] = c.model.block_size
    else:
        key["seq_len"] = loaded.seq_len
    return key


def check_members(dirs: Sequence[Path], members: Sequence[LoadedModel]) -> None:
    """A one-line error naming the member and the first key on which it differs from the
    first member (keys in `ensemble_key`'s order: data, vocabulary, layout, input width)."""
    first = ensemble_key(members[0])
    for d, m in zip(dirs[1:], members[1:], strict=True):
        key = ensemble_key(m)
        for k, v in first.items():
            if key.get(k) != v:
                raise UserError(
                    f"ensemble member '{d}' has {k}={key.get(k)!r} but '{dirs[0]}' has {k}={v!r}; "
                    "members must share the data, split, vocabulary and model input"
                )


def make_ensemble_step(models: Sequence[nn.Module]):
    """`(variables per member, X, Y) -> (mixture nll sum, nll sum per member, count)` over the
    counted targets, jitted: one program runs every member on the batch.

    The mixture's -log mean_m p_m(y) is computed in log space, log M - logsumexp_m log p_m(y),
    so that no probability underflows; each member's own nll is the loss of `masked_nll`.
    """
    log_m = math.log(len(models))

    @jax.jit
    def step(variables, X, Y):
        per_member = [
            masked_nll_per_position(model.apply(v, X, train=False), Y)
            for model, v in zip(models, variables, strict=True)
        ]
        nll_MxP = jnp.stack([nll.reshape(-1) for nll, _ in per_member])
        counted_P = per_member[0][1].reshape(-1)
        mixture_P = log_m - jax.nn.logsumexp(-nll_MxP, axis=0)
        member_sums_M = jnp.sum(nll_MxP, axis=1)
        return jnp.sum(jnp.where(counted_P, mixture_P, 0.0)), member_sums_M, jnp.sum(counted_P)

    return step


def ensemble_loss(
    step, variables: Sequence[Any], X: np.ndarray, Y: np.ndarray, batch_size: int
) -> tuple[float | None, list[float | None]]:
    """(mixture loss, each member's loss) over one split, in the fixed-size padded batches of
    `evaluate_loss` (padding targets never count); None where the split counts no target."""
    parts = batch_outputs(lambda X_b, Y_b: step(variables, X_b, Y_b), X, Y, batch_size)
    if not parts:
        return None, [None] * len(variables)
    mixture, members, counts = zip(*parts, strict=True)
    count = int(np.sum(counts))
    if not count:
        return None, [None] * len(variables)
    member_sums_M = np.sum(np.stack(members), axis=0, dtype=np.float64)
    return float(np.sum(mixture, dtype=np.float64) / count), [
        float(x / count) for x in np.atleast_1d(member_sums_M)
    ]


def ensemble_losses(dirs: Sequence[str | Path], splits: Sequence[str] = SPLITS) -> dict[str, Any]:
    """The mixture's split losses beside each member's own, on the splits re-cut exactly as in
    training (the module docstring shows the JSON)."""
    paths = ensemble_dirs(dirs)
    members = [load_trained(p) for p in paths]
    check_members(paths, members)
    first = members[0]
    ds = dataset_from_config(first.config, vocab=first.vocab, seq_len=first.seq_len)
    step = make_ensemble_step([m.model for m in members])
    variables = tuple(m.variables for m in members)
    names = [str(p) for p in paths]
    ensemble: dict[str, float | None] = {}
    single: dict[str, dict[str, float | None]] = {n: {} for n in names}
    for s in splits:
        ensemble[s], losses = ensemble_loss(
            step, variables, *ds.split(s), first.config.eval_batch_size
        )
        for n, loss in zip(names, losses, strict=True):
            single[n][s] = loss
    single_mean = {
        s: None if ensemble[s] is None else float(np.mean([single[n][s] for n in names]))
        for s in splits
    }
    return {"members": names, "ensemble": ensemble, "single": single, "single_mean": single_mean}


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jax_makemore.evaluate", description=__doc__.split("\n\n")[0]
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--workdir", help="the run to evaluate")
    which.add_argument(
        "--ensemble",
        nargs="*",
        metavar="DIR",
        help="score the mean of these runs' predicted probabilities (a sweep DIR: its finished "
        "members); they must share data, split, vocabulary and model input. Prints "
        '{"members": [DIR, ...], "ensemble": {split: loss}, "single": {DIR: {split: loss}}, '
        '"single_mean": {split: loss}}',
    )
    parser.add_argument("--split", choices=(*SPLITS, "all"), default="all")
    parser.add_argument("--data", default=None, help="score every word of another file instead")
    parser.add_argument(
        "--score", nargs="+", default=None, metavar="WORD", help="score these words"
    )
    parser.add_argument(
        "--mass",
        action="store_true",
        help="the probability mass on the training words and on the held-out words: the "
        "expected shares of samples that copy them, and the seen-word preference",
    )
    args = parser.parse_args(argv)
    splits = SPLITS if args.split == "all" else (args.split,)
    if args.ensemble is not None:
        if args.data or args.score or args.mass:
            raise UserError(
                "--data, --score and --mass score one model (--workdir), not an --ensemble"
            )
        print(json.dumps(ensemble_losses(args.ensemble, splits), indent=2))
        return 0
    loaded = load_trained(args.workdir)
    if args.mass:
        result: object = split_masses(loaded)
    elif args.score:
        result = score_words(loaded, args.score)
    elif args.data:
        result = {"data": args.data, "loss": file_loss(loaded, args.data)}
    else:
        result = split_losses(loaded, splits)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
