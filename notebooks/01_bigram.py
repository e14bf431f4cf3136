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
# # 1. The bigram model, in JAX
#
# The first lecture of the makemore notes (`Part1-V1`) builds two bigram models of the names
# file: a table of counts, and a one-layer network `one_hot(x) @ W` trained to the same
# probabilities. This notebook follows the notes point by point: each section quotes the note,
# shows the JAX that does it, runs it, and prints or draws the result. Where a note's claim
# does not hold on this file, the measurement is shown and linked to its row in the
# [notes' claims report](../docs/experiments/notes_claims.md).
#
# Everything runs on a CPU in well under a minute; training goes through the package's public
# API, `import jax_makemore as jm`.

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

import jax_makemore as jm

words = jm.DEFAULT_DATA_PATH.read_text(encoding="utf-8").split()
vocab = jm.load_data("bigram_counts").vocab
V = len(vocab.itos)
print(f"{len(words):,} names, e.g. {words[:5]}; vocabulary of {V}: {''.join(vocab.itos)!r}")
print(f"the boundary token {vocab.boundary!r} has id {vocab.boundary_id}")

# %% [markdown]
# ## The count table
#
# > row i: probability distribution of the next character given that the previous char was "i"
# > col j: how often char "j" appeared as the second char in a bigram, across the whole dataset.
#
# Every name is framed by the boundary token (`.emma.`), and each adjacent pair is one bigram.
# `counts[i, j]` is how often character j *follows* character i. Row i, normalised, is the
# distribution of the next character after i. A single entry of column j counts the pair
# (i, j); it is the column's *sum* that says how often j is the second character of a bigram.


# %%
def bigrams(names: list[str]) -> tuple[jax.Array, jax.Array]:
    """(previous, next) character ids of every bigram of `names`, boundaries included."""
    xs, ys = [], []
    for w in names:
        ids = vocab.encode(w)
        chars = [vocab.boundary_id, *ids, vocab.boundary_id]
        xs += chars[:-1]
        ys += chars[1:]
    return jnp.array(xs), jnp.array(ys)


xs_N, ys_N = bigrams(words)
counts_VxV = jnp.zeros((V, V)).at[xs_N, ys_N].add(1.0)  # scatter-add: JAX arrays are immutable
print(
    f"{xs_N.size:,} bigrams; counts['e' -> 'm'] = {int(counts_VxV[vocab.stoi['e'], vocab.stoi['m']])}"
)

fig, ax = plt.subplots(figsize=(9, 9))
ax.imshow(np.asarray(counts_VxV), cmap="Blues")
for i in range(V):
    for j in range(V):
        ax.text(j, i, f"{vocab.itos[i]}{vocab.itos[j]}", ha="center", va="bottom", fontsize=5.5)
        ax.text(j, i, int(counts_VxV[i, j]), ha="center", va="top", fontsize=5.5, color="gray")
ax.set_xticks(range(V), vocab.itos)
ax.set_yticks(range(V), vocab.itos)
ax.set_xlabel("column j: the next character")
ax.set_ylabel("row i: the previous character")
ax.set_title("counts[i, j]: how often j follows i (whole file)")
plt.show()

# %% [markdown]
# ## Sampling: `jax.random.categorical` for `torch.multinomial`
#
# > "torch.multinomial()" -> returns a tensor so to get the value we do -> ".item()"
#
# JAX has no global random state: every draw takes a key, and a new draw needs a new key
# (`jax.random.split`). `jax.random.categorical(key, logits)` draws an index from
# softmax(logits), so the row's log-probabilities go in; it returns a 0-d array, and `int(...)`
# plays the role of `.item()`.

# %%
P_VxV = (counts_VxV + 1) / (counts_VxV + 1).sum(axis=1, keepdims=True)  # add-one smoothing


def sample_name(key: jax.Array, P_VxV: jax.Array) -> str:
    out, ix = [], vocab.boundary_id
    while True:
        key, sub = jax.random.split(key)
        ix = int(jax.random.categorical(sub, jnp.log(P_VxV[ix])))  # int(): torch's .item()
        if ix == vocab.boundary_id:
            return "".join(out)
        out.append(vocab.itos[ix])


keys = jax.random.split(jax.random.PRNGKey(0), 10)
print([sample_name(k, P_VxV) for k in keys])

# %% [markdown]
# Bigram names are bad names: with one character of memory the model cannot know how long the
# name already is, nor what came two characters ago (the notes' "How the Model Works").
#
# ## The NLL floor
#
# > that's why our lowest negative log-likelihood will be ~2.42, because it's the ceiling
# > (best possible) for any bigram model on this dataset.
#
# The unsmoothed count table is the maximum-likelihood bigram model of the words it is counted
# from, so its mean negative log-likelihood is the floor. On this file it is **2.454**, not
# ~2.42 (the lecture's own file gives 2.454 too): [claims report, row 1](../docs/experiments/notes_claims.md#1-the-bigram-floor).


# %%
def mean_nll(P_VxV: jax.Array, xs_N: jax.Array, ys_N: jax.Array) -> float:
    return float(-jnp.log(P_VxV[xs_N, ys_N]).mean())


P_ml_VxV = counts_VxV / counts_VxV.sum(axis=1, keepdims=True)
print(f"floor, unsmoothed counts, whole file: {mean_nll(P_ml_VxV, xs_N, ys_N):.4f}")
print(f"add-one smoothing, whole file:        {mean_nll(P_VxV, xs_N, ys_N):.4f}")
print(f"uniform over {V} characters:           {np.log(V):.4f}")

# %% [markdown]
# ## `jax.nn.one_hot` and why raw integers mislead
#
# > never feed raw integers that represent categories into a neural net and multiply them by
# > weights -- you are lying to the network about distances that don't exist!!
#
# `jax.nn.one_hot(xs, 27)` is `F.one_hot(xs, num_classes=27).float()`: a float32 row of
# zeros with a single 1 at the character's index.

# %%
xenc_NxV = jax.nn.one_hot(xs_N, V)
print(xenc_NxV.dtype, xenc_NxV.shape)
print("'.emma' ->", [vocab.itos[int(i)] for i in xs_N[:5]])
print(np.asarray(xenc_NxV[:5]).astype(int))

# %% [markdown]
# Fed the raw index x instead, a linear layer's logits `x * w + b` can only rise or fall with
# x: 'b' is made "between" 'a' and 'c'. Trained here with the same loss (300 full-batch Adam
# steps), the raw-index model stays far above the count table's 2.454; the claims report's
# sweep (plain gradient descent, 4 seeds) gives val 3.27 against one-hot's 2.47 at its best
# learning rate ([row 2](../docs/experiments/notes_claims.md#2-one-hot-vs-raw-integers)).


# %%
def raw_loss(p: dict, x_N: jax.Array, y_N: jax.Array) -> jax.Array:
    logits_NxV = x_N[:, None].astype(jnp.float32) * p["w"] + p["b"]
    return optax.softmax_cross_entropy(logits_NxV, jax.nn.one_hot(y_N, V)).mean()


@jax.jit
def raw_fit(p: dict, x_N: jax.Array, y_N: jax.Array) -> tuple[dict, jax.Array]:
    opt = optax.adam(0.1)

    def step(carry, _):
        p, s = carry
        loss, g = jax.value_and_grad(raw_loss)(p, x_N, y_N)
        upd, s = opt.update(g, s)
        return (optax.apply_updates(p, upd), s), loss

    (p, _), losses = jax.lax.scan(step, (p, opt.init(p)), length=300)
    return p, losses


p_raw, raw_losses = raw_fit({"w": jnp.zeros(V), "b": jnp.zeros(V)}, xs_N, ys_N)
print(
    f"raw-index model after 300 Adam steps: NLL {float(raw_loss(p_raw, xs_N, ys_N)):.4f} "
    f"(count table 2.454)"
)

# %% [markdown]
# ## `xenc @ W` is a row lookup
#
# > for each character that each row in "xenc" represents, we are copying that character's row
# > from the weight matrix W and we get 27 numbers (logits).
#
# Multiplying a one-hot row by W picks W's row: `xenc @ W` equals `W[xs]` exactly (which is
# why an embedding layer is a lookup, not a matmul).

# %%
W_VxV = jax.random.normal(jax.random.PRNGKey(2147483647), (V, V))
logits_NxV = xenc_NxV @ W_VxV
assert jnp.array_equal(logits_NxV, W_VxV[xs_N])
print("xenc @ W == W[xs] for all", xs_N.size, "rows")

# %% [markdown]
# ## `exp` as fake counts
#
# > exponentiates all 27 numbers -> turns them into positive "fake counts".
#
# `exp(logits)` is positive; normalised along the row it is a probability distribution, the
# softmax. `log(counts)` as logits would give back the count table exactly: training W is
# learning log-counts.

# %%
fake_counts_NxV = jnp.exp(logits_NxV)
probs_NxV = fake_counts_NxV / fake_counts_NxV.sum(axis=1, keepdims=True)
assert jnp.allclose(probs_NxV, jax.nn.softmax(logits_NxV, axis=1), atol=1e-6)
assert jnp.allclose(jax.nn.softmax(jnp.log(counts_VxV + 1), axis=1), P_VxV, atol=1e-6)
print("first row of fake counts:", np.round(np.asarray(fake_counts_NxV[0, :6]), 2), "...")

# %% [markdown]
# ## `keepdims=True` (torch's `keepdim=True`)
#
# > if we don't write "keepdim=True" torch internally will create a (1, 27) tensor and stretch
# > it to a (27, 27) tensor which will have the WRONG values after division takes place.
#
# The same broadcasting rules hold in NumPy and JAX (`keepdims`, with an s). Summing over axis
# 1 without it gives shape (27,), which broadcasts as a *row* (1, 27): entry (i, j) is divided
# by row j's sum. On a 3 x 3 example:

# %%
c_3x3 = jnp.array([[1.0, 1.0, 2.0], [10.0, 0.0, 0.0], [3.0, 3.0, 3.0]])
print("sum(1, keepdims=True) shape", c_3x3.sum(1, keepdims=True).shape)
print(c_3x3 / c_3x3.sum(1, keepdims=True))
print("sum(1) shape", c_3x3.sum(1).shape, "-> each COLUMN j divided by row j's sum:")
print(c_3x3 / c_3x3.sum(1))

# %% [markdown]
# On the bigram table the wrong division's rows sum to anything but 1 ([row 4](../docs/experiments/notes_claims.md#4-keepdim)):

# %%
right_VxV = (counts_VxV + 1) / (counts_VxV + 1).sum(1, keepdims=True)
wrong_VxV = (counts_VxV + 1) / (counts_VxV + 1).sum(1)
for name, t in [("keepdims=True", right_VxV), ("no keepdims", wrong_VxV)]:
    s = t.sum(1)
    print(f"{name:14s} row sums: min {float(s.min()):.3f}  max {float(s.max()):.3f}")

# %% [markdown]
# ## L2 regularisation: `W ** 2`, not `W ^ 2`
#
# > "0.01 * (W ^ 2).mean()" -> ... our L2 regularization (also called weight decay).
#
# In Python `^` is bitwise XOR, not a power: `3 ^ 2` is 1, and on a float array it is an
# error. The square is `W ** 2`.

# %%
print("3 ^ 2 =", 3 ^ 2, "   3 ** 2 =", 3**2)
try:
    W_VxV ^ 2
except TypeError as err:
    print("W ^ 2 on a float array:", type(err).__name__, "-", str(err).splitlines()[0][:70])
print("0.01 * (W ** 2).mean() =", float(0.01 * (W_VxV**2).mean()))

# %% [markdown]
# The package's `bigram` config writes the term as weight decay: the gradient of
# `l2 * mean(W ** 2)` is `(2 * l2 / W.size) * W`, exactly what
# `optax.add_decayed_weights(2 * l2 / W.size)` adds to the gradient. Checked on W:

# %%
l2 = 0.01
grad_of_term = jax.grad(lambda w: l2 * (w**2).mean())(W_VxV)
decay = optax.add_decayed_weights(2 * l2 / W_VxV.size)
added, _ = decay.update(jnp.zeros_like(W_VxV), decay.init(W_VxV), W_VxV)
assert jnp.allclose(grad_of_term, added, rtol=1e-6)
print(f"weight decay rate 2 * {l2} / {W_VxV.size} = {2 * l2 / W_VxV.size:.3e}; gradients agree")

# %% [markdown]
# ## The neural bigram, trained through the API
#
# The `bigram` config is the lecture's network: `one_hot(x) @ W`, W ~ N(0, 1), full-batch
# gradient descent at learning rate 50 for 300 steps, L2 0.01. It trains on the 80% training
# split (the notes' first lecture used every word; later lectures split them).

# %%
config = jm.get_config("bigram")
run = jm.train(config, workdir="runs/01_bigram", overwrite=True, progress=False)
print(run)
print({k: round(v, 4) for k, v in run.losses().items()})

# %% [markdown]
# Its loss on the words it was trained on against the count table of those same words, the
# floor it approaches from above (the L2 term keeps it a little higher; without it the claims
# report measures 0.005 above the floor after 300 steps,
# [row 1](../docs/experiments/notes_claims.md#1-the-bigram-floor)); and its rows, `softmax(W)`,
# against the count table's:

# %%
data = run.data()
Xtr_Nx1, Ytr_N = data.split("train")
x_tr, y_tr = jnp.asarray(Xtr_Nx1[:, -1]), jnp.asarray(Ytr_N)
counts_tr_VxV = jnp.zeros((V, V)).at[x_tr, y_tr].add(1.0)
W_trained_VxV = run.variables["params"]["W"]
P_net_VxV = jax.nn.softmax(W_trained_VxV, axis=1)
print(
    f"count table, train split:  {mean_nll(counts_tr_VxV / counts_tr_VxV.sum(1, keepdims=True), x_tr, y_tr):.4f}"
)
print(f"neural bigram, train split: {mean_nll(P_net_VxV, x_tr, y_tr):.4f}")
print(f"RMS of W: {float(jnp.sqrt((W_trained_VxV**2).mean())):.3f} (N(0, 1) at init)")

fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
for ax, t, title in [
    (axes[0], P_VxV, "count table (add-one)"),
    (axes[1], P_net_VxV, "softmax(W), trained"),
]:
    ax.imshow(np.asarray(t), cmap="Blues", vmax=0.5)
    ax.set_xticks(range(V), vocab.itos, fontsize=6)
    ax.set_yticks(range(V), vocab.itos, fontsize=6)
    ax.set_title(title)
plt.show()
print("samples:", run.sample(10, seed=0))
print("P(next | 'q'):", {c: round(p, 3) for c, p in run.next_char_probs("q").items() if p > 0.05})

# %% [markdown]
# The L2 term's claim, "almost the same probabilities, but with much smaller weights", partly
# holds: at 0.01 the weights' RMS is only 1.13 times smaller than without L2
# ([row 3](../docs/experiments/notes_claims.md#3-l2-regularisation)).
