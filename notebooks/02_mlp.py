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
# # 2. The MLP: embeddings, Kaiming init, BatchNorm
#
# The notes' second part (`Part1-V2`) replaces the bigram by Bengio et al.'s MLP: the last
# `block_size` characters are looked up in an embedding table C, concatenated, passed through
# a hidden layer with BatchNorm and tanh, and mapped to 27 logits. This notebook trains the
# package's `mlp` config (a short budget: 20,000 steps instead of 200,000) and opens it up:
# the data windows, the split, C, the init, BatchNorm line by line, evaluation, sampling, and
# finally the same network in Flax NNX with the trained weights copied in.

# %%
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from flax import nnx

import jax_makemore as jm

config = jm.get_config("mlp", num_steps=20_000)
print(config.model)

# %% [markdown]
# ## `block_size` and the `.` padding
#
# > The padding trick (using '.') is why block_size can (and should) be larger than the
# > shortest (or even average) name length.
#
# Every window is the `block_size` characters before the one to predict; at the start of a
# name the window is filled with the boundary token. "emma" gives five examples:

# %%
data = jm.load_data(config)
vocab = data.vocab
train_words, val_words, test_words = data.words
X_NxT, Y_N = data.split("train")
i = train_words.index("emma") if "emma" in train_words else 0
start = sum(len(w) + 1 for w in train_words[:i])
for x_T, y in zip(X_NxT[start : start + len(train_words[i]) + 1], Y_N[start:], strict=False):
    print("".join(vocab.itos[int(j)] for j in x_T), "->", vocab.itos[int(y)])

# %% [markdown]
# Longer context helps past 3 characters, though not all the way to 8 as the notes' rule of
# thumb suggests: val stops improving after block_size 6 at 20,000 steps
# ([claims report, row 5](../docs/experiments/notes_claims.md#5-block-size)).
#
# ## The 80/10/10 split
#
# > Validation (dev) split → used frequently to tune hyper-parameters ... Test split →
# > evaluated only sparingly at the end.
#
# The package shuffles the *distinct* words with `split_seed` and cuts them 80/10/10, so no
# name is in two splits. Training sees only the training windows; val picks hyper-parameters
# and the step count; test is read once at the end.

# %%
for name, ws in zip(("train", "val", "test"), data.words, strict=True):
    print(f"{name:5s} {len(ws):6,} words  {data.split(name)[0].shape[0]:7,} windows  e.g. {ws[:3]}")

# %% [markdown]
# ## Training through the API
#
# SGD at 0.1, then 0.01 from half-way, batches of 32 windows. `jm.train` compiles 1,000 steps
# at a time into one `lax.scan` and returns a `Run`.

# %%
run = jm.train(config, workdir="runs/02_mlp", overwrite=True, progress=False)
print(run, f"in {run.results['wall_seconds']:.1f} s")
print({k: round(v, 4) for k, v in run.losses().items()})
params = run.variables["params"]
print(jax.tree.map(jnp.shape, params))

# %% [markdown]
# ## Mini-batches: how often each example is seen
#
# > after 100k steps with batch_size=32 → 3.2 million examples processed → each example seen
# > ~14 times on average
#
# 14 is 3.2M over the whole file's 231,718 windows; training sees only the training split,
# so each of its windows is seen 17.3 times ([row 12](../docs/experiments/notes_claims.md#12-examples-seen)).
# Of "noise is your friend": at equal examples seen, batches of 32 do reach a far lower val
# than full-batch steps, but at equal steps their train-val gap is not measurably smaller
# than batch 256's ([row 11](../docs/experiments/notes_claims.md#11-mini-batches)).
# This run's 20,000 steps:

# %%
n_all = sum(data.split(s)[0].shape[0] for s in ("train", "val", "test"))
print(f"100k x 32 / {n_all:,} (whole file) = {100_000 * 32 / n_all:.1f}")
print(f"100k x 32 / {X_NxT.shape[0]:,} (train split) = {100_000 * 32 / X_NxT.shape[0]:.1f}")
print(
    f"this run: {config.num_steps:,} x {config.batch_size} / {X_NxT.shape[0]:,} = "
    f"{config.num_steps * config.batch_size / X_NxT.shape[0]:.2f} times per window"
)

# %% [markdown]
# ## The embedding table C and its 2-D map
#
# > "C" is a trainable matrix that acts as a learned dictionary ... Row 0 → 'a' ... Row 26 → '.'
#
# In Flax C is the `nn.Embed` layer's `embedding` param, and `C[idx]` is the lookup. With
# `n_embd = 2` (config `mlp_2d`) it can be drawn as it is:

# %%
C_VxE = params["Embed_0"]["embedding"]
print("C:", C_VxE.shape, "; C[X[:2]]:", C_VxE[X_NxT[:2]].shape, "(batch, block_size, n_embd)")

run2d = jm.train(
    jm.get_config("mlp_2d", num_steps=20_000),
    workdir="runs/02_mlp_2d",
    overwrite=True,
    progress=False,
)
C2_Vx2 = np.asarray(run2d.variables["params"]["Embed_0"]["embedding"])
fig, ax = plt.subplots(figsize=(5.5, 5.5))
vowels = set("aeiou")
for ch, (a, b) in zip(vocab.itos, C2_Vx2, strict=True):
    color = "tab:red" if ch in vowels else "black" if ch == vocab.boundary else "tab:blue"
    ax.scatter(a, b, s=250, color=color, alpha=0.25)
    ax.text(a, b, ch, ha="center", va="center", fontsize=11)
ax.set_title(f"C of mlp_2d (val {run2d.losses()['val']:.3f}): vowels red, '.' black")
plt.show()

# %% [markdown]
# > Vowels tend to group together. Consonants group together. Rare letters 'q', 'x', 'j' are
# > far away. The end token '.' is isolated.
#
# Measured over four seeds these hold only in part: in 2-D the consonants group and '.' sits
# apart, but the vowels' grouping and q, x, j's distance are within the seeds' spread
# ([row 6](../docs/experiments/notes_claims.md#6-what-the-embeddings-learn)). This one map:


# %%
def mean_dist(a: list[int], b: list[int]) -> float:
    d = np.linalg.norm(C2_Vx2[a][:, None] - C2_Vx2[b][None], axis=-1)
    return float(d[~np.eye(len(a), dtype=bool)].mean() if a == b else d.mean())


vow = [vocab.stoi[c] for c in "aeiou"]
con = [vocab.stoi[c] for c in vocab.itos if c not in vowels and c != vocab.boundary]
print(
    f"within vowels {mean_dist(vow, vow):.2f}, within consonants {mean_dist(con, con):.2f}, "
    f"vowel-consonant {mean_dist(vow, con):.2f}"
)

# %% [markdown]
# ## The hidden layer and Kaiming init
#
# > For tanh: std = gain / √(fan_in) ... Tanh on std=1 input produces std≈0.63 output, so we
# > boost the input by the inverse factor
#
# The hidden layer is `nn.Dense(200, use_bias=False)` on the 3 x 10 = 30 concatenated
# embeddings: one column of W1 per hidden unit ("detective"). Its kernel starts as
# N(0, (5/3)^2 / 30). The std of tanh(z) for z ~ N(0, 1) is 0.628, so the exact inverse would
# be 1.59, not 5/3 ([row 7](../docs/experiments/notes_claims.md#7-kaiming-gain)):
#
# (> 100 → excellent ... 1000 → overfits. A sweep of n_hidden 1 to 1,000 over four seeds
# finds that with BatchNorm and 200,000 steps 300 units beat 100 on val by 0.036 and 1,000
# beat 300: val keeps improving, while the train-val gap grows and a few more samples copy
# training names; [docs/experiments/sweeps.md](../docs/experiments/sweeps.md#the-hidden-layers-size-the-notes-claims-measured).)

# %%
init_vars = run.model.init(jax.random.PRNGKey(0), jnp.asarray(X_NxT[:32]), train=False)
W1_init = init_vars["params"]["Dense_0"]["kernel"]
fan_in = W1_init.shape[0]
print(
    f"W1 {W1_init.shape}: std {float(W1_init.std()):.4f}, (5/3)/sqrt({fan_in}) = "
    f"{5 / 3 / np.sqrt(fan_in):.4f}"
)
z = jax.random.normal(jax.random.PRNGKey(1), (1_000_000,))
s = float(jnp.tanh(z).std())
print(f"std(tanh(N(0,1))) = {s:.4f}; 1/{s:.4f} = {1 / s:.3f}; 5/3 = {5 / 3:.3f}")

# %% [markdown]
# ## BatchNorm, line by line
#
# > `hpreact.mean(0, keepdim=True)` → mean along batch dim for each neuron ... epsilon →
# > prevents division by zero ... Scale and shift with learnable bngain and bnbias
#
# The package's BatchNorm keeps its gain and bias in `params` and its running mean and
# variance in a separate collection, `batch_stats`. A training forward that may update them is
# `model.apply(variables, x, train=True, mutable=["batch_stats"])`, which returns the new
# statistics beside the output instead of changing anything in place. Here the layer is
# recomputed by hand on one batch and compared with what the model computed (its sown
# `preact_BxH`, the BatchNorm output):

# %%
xb_BxT = jnp.asarray(X_NxT[:32])
logits_BxV, new_state = run.model.apply(
    run.variables, xb_BxT, train=True, mutable=["batch_stats", "intermediates"]
)
bn = params["BatchNorm_0"]
hpreact_BxH = C_VxE[xb_BxT].reshape(32, -1) @ params["Dense_0"]["kernel"]
mean_1xH = hpreact_BxH.mean(0, keepdims=True)
var_1xH = ((hpreact_BxH - mean_1xH) ** 2).mean(0, keepdims=True)  # biased, as torch normalises
by_hand_BxH = (hpreact_BxH - mean_1xH) / jnp.sqrt(var_1xH + 1e-5) * bn["scale"] + bn["bias"]
sown_BxH = new_state["intermediates"]["preact_BxH"][0]
print("max |by hand - model|:", float(jnp.abs(by_hand_BxH - sown_BxH).max()))
normed = (hpreact_BxH - mean_1xH) / jnp.sqrt(var_1xH + 1e-5)
print(
    f"normalised: mean {float(jnp.abs(normed.mean(0)).max()):.1e} (max over units), std "
    f"{float(normed.std(0).mean()):.4f} (mean over units)"
)
old, new = run.variables["batch_stats"]["BatchNorm_0"], new_state["batch_stats"]["BatchNorm_0"]
expect = 0.999 * old["mean"] + 0.001 * mean_1xH[0]
assert jnp.allclose(new["mean"], expect, atol=1e-6)
print("running mean moved by momentum 0.001 toward the batch mean: checked")

# %% [markdown]
# The notes divide by `std + 1e-5`; the package (like PyTorch's BatchNorm and Flax's) divides by
# `sqrt(var + 1e-5)`: the epsilon is inside the root. Either keeps a zero std finite.
#
# ## Why b1 goes
#
# > Any constant shift from b1 is immediately subtracted by the `-bnmean` term.
#
# Adding any bias vector to the pre-activations moves the batch mean by the same vector, so
# BatchNorm's output does not change, and b1's gradient is zero
# ([row 14](../docs/experiments/notes_claims.md#14-removing-b1)):


# %%
def bn_train(h_BxH: jax.Array) -> jax.Array:
    m = h_BxH.mean(0, keepdims=True)
    v = ((h_BxH - m) ** 2).mean(0, keepdims=True)
    return (h_BxH - m) / jnp.sqrt(v + 1e-5) * bn["scale"] + bn["bias"]


b1_H = jax.random.normal(jax.random.PRNGKey(3), (hpreact_BxH.shape[1],)) * 5
print(
    "max change of BatchNorm's output for b1 ~ N(0, 25):",
    float(jnp.abs(bn_train(hpreact_BxH + b1_H) - bn_train(hpreact_BxH)).max()),
)
g_b1 = jax.grad(lambda b: jnp.tanh(bn_train(hpreact_BxH + b)).sum())(jnp.zeros_like(b1_H))
print("max |d loss / d b1|:", float(jnp.abs(g_b1).max()))

# %% [markdown]
# ## Running statistics at evaluation, and a batch of one
#
# > Using running stats → same global normalization the model is used to ... Normalizing over
# > single example → ... slightly worse names.
#
# `train=False` normalises with the running statistics, so a window gets the same output alone
# or inside any batch. Normalising a single window by its own statistics makes every hidden
# unit equal to its bias: the model ignores its input. That is far more than "slightly worse"
# ([rows 9 and 10](../docs/experiments/notes_claims.md#9-running-statistics)):

# %%
Xva_NxT, Yva_N = (jnp.asarray(a) for a in data.split("val"))


def nll(logits_NxV: jax.Array, y_N: jax.Array) -> float:
    return float(optax.softmax_cross_entropy_with_integer_labels(logits_NxV, y_N).mean())


running = run.model.apply(run.variables, Xva_NxT, train=False)
alone = jax.vmap(
    lambda x_T: run.model.apply(run.variables, x_T[None], train=True, mutable=["batch_stats"])[0][0]
)(Xva_NxT)
print(f"val, running statistics:        {nll(running, Yva_N):.4f}")
print(f"val, each window normalised alone: {nll(alone, Yva_N):.4f}")
print("logits of two different windows, alone:", np.round(np.asarray(alone[:2, :4]), 3))

# %% [markdown]
# ## Evaluation without gradients
#
# > Why `@torch.no_grad()` for split evaluation? ... skips building the computation graph
#
# JAX builds no graph while running a function: `model.apply` is just the forward pass.
# Gradients exist only where a function is transformed by `jax.grad`, so evaluation needs no
# `no_grad`; `jax.jit` compiles the forward once. The gradient is the separate, costlier program:

# %%
forward = jax.jit(lambda v, x: run.model.apply(v, x, train=False))


@jax.jit
def loss_and_grad(v, x, y):
    def loss(p):
        logits = run.model.apply({**v, "params": p}, x, train=False)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    return jax.value_and_grad(loss)(v["params"])


for f, args, name in [
    (forward, (run.variables, Xva_NxT), "forward"),
    (loss_and_grad, (run.variables, Xva_NxT, Yva_N), "value_and_grad"),
]:
    jax.block_until_ready(f(*args))
    t = time.perf_counter()
    for _ in range(5):
        jax.block_until_ready(f(*args))
    print(
        f"{name:15s} on the {Xva_NxT.shape[0]:,} val windows: {(time.perf_counter() - t) / 5 * 1e3:.1f} ms"
    )

# %% [markdown]
# ## Sampling with a batch of one
#
# > Why `C[torch.tensor([context])]` instead of `C[torch.tensor(context)]`? The model expects a
# > batch dimension (even if B=1).
#
# The batch dimension comes from the index array's shape:

# %%
context = [vocab.boundary_id] * config.model.block_size
print("C[jnp.array([context])]:", C_VxE[jnp.array([context])].shape)
print("C[jnp.array(context)]:  ", C_VxE[jnp.array(context)].shape)
try:
    run.model.apply(run.variables, jnp.array(context), train=False)
except ValueError as err:
    print("model.apply without the batch axis:", type(err).__name__, "-", str(err)[:60])


def sample_by_hand(key: jax.Array) -> str:
    ctx, out = list(context), []
    while True:
        logits_1xV = forward(run.variables, jnp.array([ctx]))
        key, sub = jax.random.split(key)
        ix = int(jax.random.categorical(sub, logits_1xV[0]))
        if ix == vocab.boundary_id:
            return "".join(out)
        out.append(vocab.itos[ix])
        ctx = ctx[1:] + [ix]


print("by hand:", [sample_by_hand(k) for k in jax.random.split(jax.random.PRNGKey(0), 8)])

# %% [markdown]
# > Generated name lengths are limited by the context length (block_size).
#
# They are not: the window slides and sampling stops only at the boundary token; 82% of
# block-3 samples are longer than 3 characters ([row 13](../docs/experiments/notes_claims.md#13-name-length)).
# The API's sampler, scorer and next-character distribution:

# %%
samples = run.sample(10, seed=0)
print("run.sample:", samples)
print("lengths:", [len(w) for w in samples], "block_size", config.model.block_size)
print("prefix 'ma':", run.sample(5, seed=0, prefix="ma"))
for r in run.score(["emma", "zqxj"]):
    print(f"score {r['word']!r}: {r['nll_per_char']:.3f} nats/char")
top = sorted(run.next_char_probs("em").items(), key=lambda kv: -kv[1])[:5]
print("after 'em':", {c: round(p, 3) for c, p in top})

# %% [markdown]
# ## The same MLP in Flax NNX
#
# Flax's newer API, NNX, holds parameters and BatchNorm statistics inside the module objects
# (`nnx.Param`, `nnx.BatchStat`), as PyTorch does. Here is the notes' MLP in NNX, with the
# Linen run's trained weights copied in. Flax NNX's BatchNorm momentum is the weight of the
# *old* statistic, so the package's 0.001 is NNX's 0.999.


# %%
class NnxMLP(nnx.Module):
    def __init__(
        self, vocab_size: int, block_size: int, n_embd: int, n_hidden: int, rngs: nnx.Rngs
    ):
        self.C = nnx.Embed(vocab_size, n_embd, rngs=rngs)
        self.W1 = nnx.Linear(block_size * n_embd, n_hidden, use_bias=False, rngs=rngs)
        self.bn = nnx.BatchNorm(n_hidden, momentum=0.999, epsilon=1e-5, rngs=rngs)
        self.W2 = nnx.Linear(n_hidden, vocab_size, rngs=rngs)

    def __call__(self, idx_BxT: jax.Array) -> jax.Array:
        emb_BxTxE = self.C(idx_BxT)
        h_BxH = jnp.tanh(self.bn(self.W1(emb_BxTxE.reshape(idx_BxT.shape[0], -1))))
        return self.W2(h_BxH)


m = config.model
nnx_mlp = NnxMLP(len(vocab.itos), m.block_size, m.n_embd, m.n_hidden, nnx.Rngs(0))
p, stats = run.variables["params"], run.variables["batch_stats"]
nnx_mlp.C.embedding[...] = p["Embed_0"]["embedding"]  # nnx.Param: var[...] is its array
nnx_mlp.W1.kernel[...] = p["Dense_0"]["kernel"]
nnx_mlp.bn.scale[...], nnx_mlp.bn.bias[...] = p["BatchNorm_0"]["scale"], p["BatchNorm_0"]["bias"]
nnx_mlp.bn.mean[...] = stats["BatchNorm_0"]["mean"]  # nnx.BatchStat
nnx_mlp.bn.var[...] = stats["BatchNorm_0"]["var"]
nnx_mlp.W2.kernel[...], nnx_mlp.W2.bias[...] = p["Dense_1"]["kernel"], p["Dense_1"]["bias"]
print(
    type(nnx_mlp.bn.mean).__name__,
    nnx_mlp.bn.mean.shape,
    "|",
    type(nnx_mlp.W1.kernel).__name__,
    nnx_mlp.W1.kernel.shape,
)

nnx_mlp.eval()  # BatchNorm uses its running statistics (use_running_average=True)
nnx_logits = nnx_mlp(Xva_NxT)
np.testing.assert_allclose(np.asarray(nnx_logits), np.asarray(running), rtol=1e-4, atol=1e-4)
print(
    "NNX and Linen give the same val logits; max |diff| =",
    float(jnp.abs(nnx_logits - running).max()),
    "; val",
    round(nll(nnx_logits, Yva_N), 4),
)

# %% [markdown]
# **Why the package uses Linen's explicit collections.** A Linen model is a pure function of
# `(variables, inputs)`: the params and the `batch_stats` are plain dicts passed in, and the
# new statistics come back as a value (`mutable=["batch_stats"]`). That is what lets the
# training loop put a whole 1,000-step chunk inside one `jax.lax.scan`, `vmap` a sweep's
# members over a stacked axis of variables, checkpoint a pytree as it is, and evaluate with
# the moving average of the params by swapping one dict. NNX can do all of this too (through
# `nnx.split`/`nnx.merge` at the transform boundary), but the state then lives in objects that
# mutate, and every transform needs that conversion.
