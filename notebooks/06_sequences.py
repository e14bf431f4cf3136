# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 6. Sequence models: RNN, GRU and Transformer behind one contract
#
# The window models of the lectures (bigram, MLP, WaveNet) see a fixed context and predict one
# character. makemore.py's later models read a whole word and predict every next character at
# once: a row `.emma` gives the targets `emma.`. The package runs them in the *sequences*
# layout, and every such model answers the same call:
#
#     logits_BxTxV = model.apply(variables, idx_BxT, train=..., segment_BxT=None, position_BxT=None)
#
# This notebook trains the `rnn`, `gru` and `transformer` configs briefly (a few thousand
# steps instead of the configs' 30,000 / 30,000 / 7,500), then shows the contract on a padded and a packed
# row, the cached sampler, and what each model's names look like.

# %%
import time

import jax
import jax.numpy as jnp
import numpy as np

import jax_makemore as jm

BUDGETS = {"rnn": 3_000, "gru": 2_000, "transformer": 600}
runs = {}
for name, steps in BUDGETS.items():
    runs[name] = jm.train(
        jm.get_config(name, num_steps=steps),
        workdir=f"runs/06_{name}",
        overwrite=True,
        progress=False,
    )

print(f"{'model':12s} {'params':>8s} {'steps':>6s} {'train':>7s} {'val':>7s} {'seconds':>8s}")
for name, r in runs.items():
    losses = r.losses()
    print(
        f"{name:12s} {r.num_params:8,d} {r.step:6,d} {losses['train']:7.4f} {losses['val']:7.4f} "
        f"{r.results['wall_seconds']:8.1f}"
    )

# %% [markdown]
# ## The sequences layout: one row per word
#
# A word's row starts with the boundary token; its targets are the word and the boundary
# token; positions past the end are padding with target -1 (ignored by the loss). Every model
# returns logits at every position:

# %%
data = runs["rnn"].data()
vocab = data.vocab
X_NxL, Y_NxL = data.split("train")
i = data.words[0].index("emma") if "emma" in data.words[0] else 0
print("X row:", X_NxL[i].tolist())
print("Y row:", Y_NxL[i].tolist())
row_1xL = jnp.asarray(X_NxL[i : i + 1])
for name, r in runs.items():
    logits = r.model.apply(r.variables, row_1xL, train=False)
    p_next = jax.nn.softmax(logits[0, :5])
    picks = [vocab.itos[int(j)] for j in p_next.argmax(-1)]
    print(
        f"{name:12s} logits {logits.shape}; most likely after '.', '.e', '.em', '.emm', '.emma':",
        picks,
    )

# %% [markdown]
# ## Packed rows
#
# Names average about six characters and the padded row is 16 wide, so most of a padded batch
# is padding. The configs pack whole words end to end (`packed=True`): `segment_BxT` numbers
# the row's words 1, 2, ... (0 on the empty tail) and `position_BxT` is the position inside the
# word. The model then gives every word exactly the logits it gets alone: the RNN and GRU
# restart their state at a word's first position, the Transformer's attention mask keeps each
# word to itself, and positions count from the word's start. Checked on a row holding "emma"
# and "ava":


# %%
def packed_row(words: list[str], width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, seg, pos = [], [], []
    for k, w in enumerate(words, start=1):
        ids = [vocab.boundary_id, *vocab.encode(w)]
        x += ids
        seg += [k] * len(ids)
        pos += list(range(len(ids)))
    pad = width - len(x)
    return (
        np.array([x + [vocab.boundary_id] * pad]),
        np.array([seg + [0] * pad]),
        np.array([pos + [0] * pad]),
    )


X_1xW, seg_1xW, pos_1xW = packed_row(["emma", "ava"], X_NxL.shape[1])
print("X:       ", "".join(vocab.itos[int(j)] for j in X_1xW[0]))
print("segment:", seg_1xW[0].tolist())
print("position:", pos_1xW[0].tolist())
for name, r in runs.items():
    packed = r.model.apply(
        r.variables,
        jnp.asarray(X_1xW),
        train=False,
        segment_BxT=jnp.asarray(seg_1xW),
        position_BxT=jnp.asarray(pos_1xW),
    )
    alone = r.model.apply(
        r.variables, jnp.asarray(packed_row(["ava"], X_NxL.shape[1])[0]), train=False
    )
    diff = float(jnp.abs(packed[0, 5:9] - alone[0, :4]).max())
    print(f"{name:12s} 'ava' inside the packed row vs alone: max |logit diff| = {diff:.1e}")
    assert diff < 1e-4, name

# %% [markdown]
# How much of a row is real targets, padded against packed (next-fit, rows of 16, the training
# words in order):

# %%
lengths = np.array([len(w) + 1 for w in data.words[0]])
W = X_NxL.shape[1]
rows, used = 1, 0
for n in lengths:
    if used + n > W:
        rows, used = rows + 1, 0
    used += n
print(
    f"padded rows: {len(lengths):,} rows, {lengths.sum() / (len(lengths) * W):.0%} of positions are targets"
)
print(f"packed rows: {rows:,} rows, {lengths.sum() / (rows * W):.0%} of positions are targets")

# %% [markdown]
# ## Cached decoding
#
# Sampling a sequence model one character at a time can recompute the whole prefix at every
# step, or keep what it computed: the RNN and GRU their hidden state, the Transformer the keys
# and values of past positions (a KV cache). `run.sample` uses the cache; `recompute=True` is
# the other sampler. The two give the same names from the same seed:

# %%
for name, r in runs.items():
    timings, words = {}, {}
    for mode, recompute in [("cached", False), ("recompute", True)]:
        r.sample(100, seed=1, recompute=recompute)  # compile first, at the same size
        t = time.perf_counter()
        words[mode] = r.sample(100, seed=0, recompute=recompute)
        timings[mode] = time.perf_counter() - t
    same = sum(a == b for a, b in zip(words["cached"], words["recompute"], strict=True))
    print(
        f"{name:12s} 100 names: cached {timings['cached']:.2f} s, recompute "
        f"{timings['recompute']:.2f} s; identical names {same}/100"
    )

# %% [markdown]
# (At float rounding a name could differ where two characters' probabilities tie to the last
# bit.) Once compiled, the cached sampler does constant work per character, the recomputing
# one reruns the model over the whole prefix; the gap is largest for the Transformer, whose
# every step otherwise recomputes attention over all earlier positions.
#
# ## What each model's names look like

# %%
for name, r in runs.items():
    names = r.sample(12, seed=0)
    labels = r.label(names)
    new = sum(lab == "new" for lab in labels)
    print(f"{name:12s} {new:2d}/12 new:", names)
scores = {name: r.score(["emma", "olivia", "zzyzx"]) for name, r in runs.items()}
for name, s in scores.items():
    print(f"{name:12s}", {d["word"]: round(d["nll_per_char"], 3) for d in s})

# %% [markdown]
# How far these short runs are from the configs' full budgets (val from the README's results
# table, trained 30,000 / 30,000 / 7,500 steps):

# %%
FULL_VAL = {"rnn": 2.0801, "gru": 2.0342, "transformer": 2.0451}
for name, r in runs.items():
    val = r.losses()["val"]
    print(
        f"{name:12s} {r.step:6,d} steps: val {val:.4f}; full budget {FULL_VAL[name]:.4f} "
        f"(+{val - FULL_VAL[name]:.3f} to go)"
    )

# %% [markdown]
# The tuned Transformer recipe, and how much of it is memorising training names, is in
# [docs/experiments/transformer.md](../docs/experiments/transformer.md).
