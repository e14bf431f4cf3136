"""The MLP's context: block size, what the embeddings learn, the length of sampled names."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from claims.runner import Runner, dataset, load_member, losses, members
from claims.verdict import bound_part, claim, difference_part, fmt, part

VOWELS = "aeiou"
RARE = "qxj"


def block_sweep(run: Runner) -> dict[str, Any]:
    """The notes' MLP at each block_size (also the default-embedding, running-statistics,
    name-length and batch-32 runs: block 3 is the `mlp` config itself)."""
    sizes = ",".join(str(b) for b in run.budget.block_sizes)
    return run.sweep(
        "block_size", "mlp", {"model.block_size": sizes}, run.loop(run.budget.mlp_steps)
    )


def claim_block_size(run: Runner) -> dict[str, Any]:
    """val against block_size, and the first size after which one more character stops
    helping by more than twice the spread."""
    record, sizes = block_sweep(run), run.budget.block_sizes
    val = {b: losses(record, "val", model__block_size=b) for b in sizes}
    train = {b: losses(record, "train", model__block_size=b) for b in sizes}
    steps = {
        b: difference_part(f"{a} → {b}", val[b], val[a], -1)
        for a, b in zip(sizes, sizes[1:], strict=False)
    }
    stop = next((a for a, b in zip(sizes, sizes[1:], strict=False) if not steps[b]["holds"]), None)
    rows = [["block_size", "train", "val", "val change from the size before", "2 × spread"]]
    for b in sizes:
        s = steps.get(b)
        rows.append(
            [str(b), fmt(train[b]), fmt(val[b]), f"{s['difference']:+.4f}" if s else "",
             f"{2 * s['spread']:.4f}" if s else ""]
        )  # fmt: skip
    last = sizes[-1]
    where = (
        f"val stops improving after block_size {stop}" if stop else f"val still improves at {last}"
    )
    parts = [
        difference_part(
            f"the longest context tried ({last}) beats the notes' 3", val[last], val[3], -1
        ),
        part(f"each added character helps, up to {last}", stop is None, where),
    ]
    why = (
        f"{where} ({run.budget.mlp_steps:,} steps); from 3 to {last} characters val moves "
        f"{statistics.mean(val[last]) - statistics.mean(val[3]):+.4f}"
    )
    return claim(
        "block_size",
        "Block size",
        "set block size to the longest context you can afford (in compute and memory) — more "
        "importantly, one that still gives good performance",
        [record["command"]],
        {"val": val, "train": train, "stops_after": stop},
        rows,
        parts,
        why,
    ) | {"key_figure": where}


def embedding_table(loaded: Any) -> np.ndarray:
    """The V x E character embedding of a trained MLP (its `Embed` params)."""
    leaves = jax.tree_util.tree_leaves_with_path(loaded.variables["params"])
    tables = [x for p, x in leaves if "Embed" in jax.tree_util.keystr(p)]
    return np.asarray(tables[0], np.float64)


def embedding_geometry(C_VxE: np.ndarray, itos: Sequence[str]) -> dict[str, float]:
    """Distances in one embedding: mean within-vowel, within-consonant and vowel–consonant
    distances; q, x, j's mean distance from the centroid of all rows against the other
    letters', with their ranks (1 = farthest of all rows); the boundary token's nearest-neighbour
    distance against the mean of the letters'."""
    D = np.linalg.norm(C_VxE[:, None] - C_VxE[None], axis=-1)
    letters = [i for i, c in enumerate(itos[:-1])]
    vow = [i for i in letters if itos[i] in VOWELS]
    con = [i for i in letters if itos[i] not in VOWELS]
    rare = [i for i in letters if itos[i] in RARE]

    def mean_pairs(a: list[int], b: list[int]) -> float:
        return float(np.mean([D[i, j] for i in a for j in b if i != j]))

    centre = np.linalg.norm(C_VxE - C_VxE.mean(0), axis=1)
    rank = {itos[i]: int(np.sum(centre > centre[i])) + 1 for i in rare}
    nn_dist = np.where(np.eye(len(D), dtype=bool), np.inf, D).min(1)
    return {
        "within_vowel": mean_pairs(vow, vow),
        "within_consonant": mean_pairs(con, con),
        "vowel_consonant": mean_pairs(vow, con),
        "rare_centroid": float(centre[rare].mean()),
        "other_centroid": float(np.mean([centre[i] for i in letters if i not in rare])),
        **{f"rank_{c}": float(r) for c, r in rank.items()},
        "boundary_nn": float(nn_dist[-1]),
        "letters_nn": float(nn_dist[letters].mean()),
    }


def claim_embeddings(run: Runner) -> dict[str, Any]:
    """The four groupings of the notes on the 2-D and the default (10-D) embeddings."""
    two_d = run.sweep("embedding_2d", "mlp_2d", {}, run.loop(run.budget.mlp_steps))
    sources = {"2-D": members(two_d), "10-D": members(block_sweep(run), model__block_size=3)}
    geo, parts = {}, []
    for label, found in sources.items():
        rows = []
        for m in found:
            loaded = load_member(m)
            rows.append(embedding_geometry(embedding_table(loaded), loaded.vocab.itos))
        g = geo[label] = {k: [r[k] for r in rows] for k in rows[0]}
        parts += [
            difference_part(f"{label}: vowels group (within-vowel < vowel–consonant distance)",
                            g["within_vowel"], g["vowel_consonant"], -1, paired=True),
            difference_part(f"{label}: consonants group (within-consonant < vowel–consonant)",
                            g["within_consonant"], g["vowel_consonant"], -1, paired=True),
            difference_part(f"{label}: q, x, j lie far out (distance from the centroid, against "
                            "the other letters')", g["rare_centroid"], g["other_centroid"], +1,
                            paired=True),
            difference_part(f"{label}: the boundary token is isolated (its nearest-neighbour "
                            "distance, against the letters' mean)", g["boundary_nn"],
                            g["letters_nn"], +1, paired=True),
        ]  # fmt: skip
    names = [("within_vowel", "within-vowel distance"), ("within_consonant", "within-consonant"),
             ("vowel_consonant", "vowel–consonant"), ("rare_centroid", "q, x, j from centroid"),
             ("other_centroid", "other letters from centroid"), ("rank_q", "rank of q (1 = farthest of 27)"),
             ("rank_x", "rank of x"), ("rank_j", "rank of j"), ("boundary_nn", "boundary token's NN distance"),
             ("letters_nn", "letters' mean NN distance")]  # fmt: skip
    table = [["measure", "2-D", "10-D"]]
    table += [[label, fmt(geo["2-D"][k], 2), fmt(geo["10-D"][k], 2)] for k, label in names]
    held = [p["part"] for p in parts if p["holds"]]
    why = f"{len(held)} of {len(parts)} parts hold; " + "; ".join(
        f"{p['part'].split(' (')[0]}: {'yes' if p['holds'] else 'no'}" for p in parts
    )
    return claim(
        "embeddings",
        "What the embeddings learn",
        "Vowels tend to group together. Consonants group together. Rare letters 'q', 'x', 'j' "
        "are far away. The end token '.' is isolated.",
        [two_d["command"], block_sweep(run)["command"] + "   (the block_size=3 members)"],
        geo,
        table,
        parts,
        why,
    ) | {"key_figure": f"{len(held)}/{len(parts)} groupings significant"}


def ks_distance(a: Sequence[int], b: Sequence[int]) -> float:
    """Largest gap between the empirical CDFs of two samples of integers."""
    top = max(max(a), max(b)) + 1
    ca = np.cumsum(np.bincount(a, minlength=top)) / len(a)
    cb = np.cumsum(np.bincount(b, minlength=top)) / len(b)
    return float(np.abs(ca - cb).max())


def claim_name_length(run: Runner) -> dict[str, Any]:
    """Lengths of sampled names from block_size 3 and 8 against the training words'."""
    data_len = [len(w) for w in dataset(run.data, 3).words[0]]
    table = [["source", "mean length", "std", "longest", "share longer than block_size",
              "KS distance to the data"]]  # fmt: skip
    table.append(["training words", fmt(float(np.mean(data_len)), 2), fmt(float(np.std(data_len)), 2),
                  str(max(data_len)), "", ""])  # fmt: skip
    stats = {}
    for b in (3, 8):
        rows = []
        for m in members(block_sweep(run), model__block_size=b):
            lens = [len(w) for w in run.sample(m["dir"], run.budget.num_samples)]
            rows.append({"mean": float(np.mean(lens)), "std": float(np.std(lens)),
                         "max": float(max(lens)), "longer": float(np.mean(np.array(lens) > b)),
                         "ks": ks_distance(lens, data_len)})  # fmt: skip
        s = stats[b] = {k: [r[k] for r in rows] for k in rows[0]}
        table.append([f"samples, block_size {b}", fmt(s["mean"], 2), fmt(s["std"], 2),
                      fmt(s["max"], 1), fmt(s["longer"], 3), fmt(s["ks"], 3)])  # fmt: skip
    parts = [
        bound_part("lengths are limited by block_size: few block_size-3 samples are longer than "
                   "3 characters (share, needs < 5%)", statistics.mean(stats[3]["longer"]), 0.05,
                   below=True),
        difference_part("a longer context gives lengths closer to the data's (KS distance, block "
                        "8 against 3)", stats[8]["ks"], stats[3]["ks"], -1),
    ]  # fmt: skip
    why = (
        f"{statistics.mean(stats[3]['longer']):.0%} of block_size-3 names are longer than 3 "
        "characters: sampling slides the window and stops only at the boundary token, so length "
        "is not capped; from block_size 3 to 8 the KS distance to the data's lengths moves by "
        f"{statistics.mean(stats[8]['ks']) - statistics.mean(stats[3]['ks']):+.3f}"
    )
    return claim(
        "name_length", "Name length",
        "Generated name lengths are limited by the context length (block_size).",
        [block_sweep(run)["command"] + "   (the block_size=3 and 8 members)",
         f"python -m jax_makemore.sample --workdir MEMBER --num {run.budget.num_samples} --seed 0"],
        {str(k): v for k, v in stats.items()} | {"data_mean_length": float(np.mean(data_len))},
        table, parts, why,
    ) | {"key_figure": f"{statistics.mean(stats[3]['longer']):.0%} of block-3 names exceed 3 "
                       "characters"}  # fmt: skip
