"""The first lecture's claims: the bigram floor, one-hot inputs, L2 regularisation, keepdim."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from claims.budget import seeds_of
from claims.exact import keepdim_tables
from claims.runner import Runner, dataset, load_member, losses, members
from claims.verdict import bound_part, claim, difference_part, figure_part, fmt
from jax_makemore.models.bigram import count_table


def claim_bigram_floor(run: Runner) -> dict[str, Any]:
    """The whole-file count table's NLL against the notes' ~2.42, and no trained bigram below
    the count table on the words it is counted from."""
    b = run.budget
    floor = run.train("bigram_floor", "bigram_counts",
                      {"split_fractions": "(1.0,0.0,0.0)", "model.smoothing": "0",
                       "data_path": str(run.data)})  # fmt: skip
    whole = floor["loss"]["train"]
    ds = dataset(run.data, 1)
    X, Y = ds.split("train")
    counts = np.asarray(count_table(jnp.asarray(X), jnp.asarray(Y), ds.vocab.size))
    probs = counts / counts.sum(1, keepdims=True)
    train_floor = float(-np.mean(np.log(probs[X[:, -1], Y])))
    l2 = l2_sweep(run)
    neural = losses(l2, "train", l2_mean=0.0)
    parts = [
        figure_part("the count bigram's NLL on the whole file is ~2.42", whole, 2.42, 0.005),
        difference_part("no trained bigram gets below the count table on the words it is "
                        "counted from (neural bigram, no L2, train split)", neural,
                        [train_floor], +1),
    ]  # fmt: skip
    table = [
        ["model", "words", "NLL"],
        ["count table, no smoothing", "whole file", fmt(whole)],
        ["count table, no smoothing", "train split", fmt(train_floor)],
        [f"neural bigram, no L2 ({b.bigram_steps} full-batch steps, {seeds_of(b)})",
         "train split", fmt(neural)],
    ]  # fmt: skip
    why = (
        f"the floor of this file is {whole:.4f}, {whole - 2.42:+.4f} from the notes' ~2.42 "
        "(the lectures' own file gives 2.454 too); the trained bigram stays "
        f"{parts[1]['difference']:+.4f} from the count table on the words it is counted from, "
        "whose maximum-likelihood fit the count table is"
    )
    return claim(
        "bigram_floor",
        "The bigram floor",
        "our lowest negative log-likelihood will be ~2.42 … the best possible for any bigram "
        "model on this dataset",
        [floor["command"], l2["command"]],
        {"whole_file": whole, "train_split": train_floor, "neural_train": neural},
        table,
        parts,
        why,
    ) | {"key_figure": f"floor {whole:.4f} (notes: ~2.42, off by {whole - 2.42:+.3f})"}


def l2_sweep(run: Runner) -> dict[str, Any]:
    """The notes' neural bigram (config `bigram`) at L2 strength 0, 0.01, 0.1 and 1."""
    return run.sweep("bigram_l2", "bigram", {"l2_mean": "0,0.01,0.1,1"},
                     run.loop(run.budget.bigram_steps) | {"steps_per_call": "100"})  # fmt: skip


def claim_one_hot(run: Runner) -> dict[str, Any]:
    """One-hot input against the raw character index as one number (best of a few rates)."""
    b = run.budget
    onehot = losses(l2_sweep(run), "val", l2_mean=0.01)
    raw = run.sweep("raw_bigram", str(run.helpers["notes_raw_bigram"]),
                    {"learning_rate": ",".join(str(x) for x in b.raw_lrs)},
                    run.loop(b.bigram_steps) | {"steps_per_call": "100"})  # fmt: skip
    rows, best = [["input", "learning rate", "members done", "val"]], None
    rows.append(["one-hot (bigram config)", "50", str(len(onehot)), fmt(onehot)])
    for lr in b.raw_lrs:
        vals = losses(raw, "val", learning_rate=float(lr))
        rows.append(["raw index x (logits = x·w + b)", f"{lr:g}", str(len(vals)),
                     fmt(vals) if vals else "diverged"])  # fmt: skip
        if len(vals) == b.seeds and (
            best is None or statistics.mean(vals) < statistics.mean(best[1])
        ):
            best = (lr, vals)
    if best is None:
        raise RuntimeError("every learning rate of the raw-integer bigram diverged")
    parts = [difference_part(f"raw integers do worse on val than one-hot (raw at its best rate, "
                             f"{best[0]:g})", best[1], onehot, +1)]  # fmt: skip
    gap = statistics.mean(best[1]) - statistics.mean(onehot)
    why = (
        f"the raw index's best val is {statistics.mean(best[1]):.4f}, {gap:+.4f} from one-hot's "
        f"{statistics.mean(onehot):.4f}: logits linear in the index x can only rise or fall "
        "with x, they cannot give each character its own row of probabilities"
    )
    return claim(
        "one_hot",
        "One-hot vs raw integers",
        "never feed raw integers that represent categories into a neural net and multiply them "
        "by weights -- you are lying to the network about distances that don't exist!!",
        [l2_sweep(run)["command"], raw["command"]],
        {"one_hot_val": onehot, "raw_val": best[1], "raw_learning_rate": best[0]},
        rows,
        parts,
        why,
    ) | {"key_figure": f"val one-hot {fmt(onehot)} vs raw {fmt(best[1])}"}


def bigram_probs(member: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(softmax rows, W) of a trained neural bigram member."""
    W = np.asarray(load_member(member).variables["params"]["W"], np.float64)
    z = W - W.max(1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(1, keepdims=True), W


def weighted_kl(counts: np.ndarray, probs: np.ndarray) -> float:
    """sum_i f_i KL(P_i || Q_i): the count table's rows P (f_i: how often row i is the context)
    against the model's rows Q, in nats per character."""
    P = counts / counts.sum(1, keepdims=True)
    f = counts.sum(1) / counts.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(P > 0, P * (np.log(P) - np.log(probs)), 0.0)
    return float(np.sum(f * terms.sum(1)))


def claim_l2(run: Runner) -> dict[str, Any]:
    """KL of the bigram's rows from the count table, and the weights' RMS, per L2 strength."""
    record = l2_sweep(run)
    ds = dataset(run.data, 1)
    X, Y = ds.split("train")
    counts = np.asarray(count_table(jnp.asarray(X), jnp.asarray(Y), ds.vocab.size), np.float64)
    kl, rms, val = {}, {}, {}
    rows = [["L2 strength", "KL(count table ‖ model), nats/char", "RMS of W", "val"]]
    for strength in (0.0, 0.01, 0.1, 1.0):
        found = members(record, l2_mean=strength)
        pairs = [bigram_probs(m) for m in found]
        kl[strength] = [weighted_kl(counts, p) for p, _ in pairs]
        rms[strength] = [float(np.sqrt(np.mean(W**2))) for _, W in pairs]
        val[strength] = [m["loss"]["val"] for m in found]
        rows.append([f"{strength:g}", fmt(kl[strength]), fmt(rms[strength], 3), fmt(val[strength])])
    kl_change = statistics.mean(kl[0.01]) - statistics.mean(kl[0.0])
    parts = [
        difference_part("L2 0.01 gives smaller weights than no L2 (RMS of W)", rms[0.01],
                        rms[0.0], -1, paired=True),
        bound_part("… much smaller: by at least a factor 1.5 (RMS without L2 / with 0.01)",
                   statistics.mean(rms[0.0]) / statistics.mean(rms[0.01]), 1.5, below=False),
        bound_part("with L2 0.01 the probabilities stay almost the same: its KL from the count "
                   "table exceeds no-L2's by less than 0.01 nats", kl_change, 0.01, below=True),
    ]  # fmt: skip
    ratio = statistics.mean(rms[0.0]) / statistics.mean(rms[0.01])
    why = (
        f"at 0.01 the weights' RMS is {ratio:.2f}x smaller than without L2 and the rows' KL "
        f"from the count table changes by {kl_change:+.4f} nats; at 0.1 and 1 the RMS is "
        f"{statistics.mean(rms[0.1]):.3f} and {statistics.mean(rms[1.0]):.3f}, the KL "
        f"{statistics.mean(kl[0.1]):.4f} and {statistics.mean(kl[1.0]):.4f} "
        f"({run.budget.bigram_steps} full-batch steps from W ~ N(0, 1))"
    )
    return claim(
        "l2", "L2 regularisation",
        "the model learns almost the same probabilities, but with much smaller weights",
        [record["command"]], {"kl": kl, "rms": rms, "val": val}, rows, parts, why,
    ) | {"key_figure": f"RMS(W) {fmt(rms[0.0], 2)} → {fmt(rms[0.01], 2)}, "
                       f"KL {fmt(kl[0.0])} → {fmt(kl[0.01])}"}  # fmt: skip


def whole_file_counts(data: Path) -> tuple[np.ndarray, Any]:
    """(bigram counts of every word of the file, vocab)."""
    ds = dataset(data, 1, "(1.0,0.0,0.0)")
    X, Y = ds.split("train")
    return np.asarray(count_table(jnp.asarray(X), jnp.asarray(Y), ds.vocab.size)), ds.vocab


def claim_keepdim(run: Runner) -> dict[str, Any]:
    """The notes' table with and without keepdim (NumPy's keepdims broadcasts as torch's)."""
    counts, vocab = whole_file_counts(run.data)
    right, wrong = keepdim_tables(counts + 1)  # the lecture's P = (N + 1) / row sums
    row_wrong, row_right = wrong.sum(1), right.sum(1)
    dev_wrong, dev_right = np.abs(row_wrong - 1), np.abs(row_right - 1)
    col_dev = float(np.abs(wrong.sum(0) - 1).max())
    q, u = vocab.stoi["q"], vocab.stoi["u"]
    parts = [
        bound_part("without keepdim the table is wrong: its rows do not sum to 1 (largest "
                   "deviation)", float(dev_wrong.max()), 1e-6, below=False),
        bound_part("with keepdim every row sums to 1 (largest deviation)", float(dev_right.max()),
                   1e-12, below=True),
    ]  # fmt: skip
    itos = vocab.itos
    order = np.argsort(-dev_wrong)[:3]
    table = [["table", "row sums: min", "max", "mean |sum − 1|", "P(u | q)"]]
    table.append(
        [
            "counts / counts.sum(1, keepdims=True)",
            fmt(row_right.min()),
            fmt(row_right.max()),
            f"{dev_right.mean():.1e}",
            fmt(right[q, u]),
        ]
    )
    table.append(["counts / counts.sum(1)", fmt(row_wrong.min()), fmt(row_wrong.max()),
                  fmt(dev_wrong.mean()), fmt(wrong[q, u])])  # fmt: skip
    why = (
        f"without keepdim entry (i, j) is divided by row j's sum: the rows sum to between "
        f"{row_wrong.min():.3f} and {row_wrong.max():.3f} (furthest: "
        f"{', '.join(repr(itos[i]) for i in order)}); because every character is both preceded "
        f"and followed once, a bigram table's row sums equal its column sums, so the wrong table "
        f"is P(previous | next) — its columns sum to 1 (largest deviation {col_dev:.1e})"
    )
    return claim(
        "keepdim",
        "keepdim",
        "if we don't write keepdim=True … a (1, 27) tensor … will have the WRONG values after "
        "division takes place",
        ["in-process: keepdim_tables(counts + 1) on the whole file's bigram counts (claims.exact)"],
        {
            "row_sums_wrong": row_wrong.tolist(),
            "row_sums_right": row_right.tolist(),
            "wrong_column_sum_max_deviation": col_dev,
        },
        table,
        parts,
        why,
    ) | {
        "key_figure": f"rows of the wrong table sum to {row_wrong.min():.3f}…{row_wrong.max():.3f}"
    }
