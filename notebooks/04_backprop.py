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
# # 4. Backprop by hand, against `jax.grad`
#
# The fourth lecture ("becoming a backprop ninja") differentiates the BatchNorm MLP by hand:
# every gradient is written out, checked against autograd, and then the cross-entropy and
# BatchNorm backward passes are collapsed into one formula each. In JAX the reference is
# `jax.grad`. This notebook writes the MLP's forward pass in `jax.numpy` on the parameters of
# a trained `mlp` run, its backward pass by hand, checks each gradient against `jax.grad` of
# the package's own model, and then trains the `mlp_manual` config (the same model updated
# with hand-written gradients) beside `mlp`.

# %%
import json

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import optax

import jax_makemore as jm

STEPS = 10_000
run = jm.train(
    jm.get_config("mlp", num_steps=STEPS), workdir="runs/04_mlp", overwrite=True, progress=False
)
params = run.variables["params"]
print(run, jax.tree.map(jnp.shape, params))
X_NxT, Y_N = run.data().split("train")
Xb_BxT, Yb_B = jnp.asarray(X_NxT[:32]), jnp.asarray(Y_N[:32])

# %% [markdown]
# ## The forward pass, in small steps
#
# The package's MLP: C[X] concatenated, a hidden Dense without bias, BatchNorm (biased batch
# variance, eps 1e-5), tanh, the output Dense. Each intermediate is kept for the backward.

# %%
EPS = 1e-5


def forward(p: dict, X_BxT: jax.Array, Y_B: jax.Array) -> tuple[jax.Array, dict]:
    n = X_BxT.shape[0]
    emb_BxTxE = p["Embed_0"]["embedding"][X_BxT]
    embcat_BxD = emb_BxTxE.reshape(n, -1)
    hprebn_BxH = embcat_BxD @ p["Dense_0"]["kernel"]
    bnmean_H = hprebn_BxH.mean(0)
    bndiff_BxH = hprebn_BxH - bnmean_H
    bnvar_H = (bndiff_BxH**2).mean(0)
    bnvar_inv_H = (bnvar_H + EPS) ** -0.5
    bnraw_BxH = bndiff_BxH * bnvar_inv_H
    hpreact_BxH = p["BatchNorm_0"]["scale"] * bnraw_BxH + p["BatchNorm_0"]["bias"]
    h_BxH = jnp.tanh(hpreact_BxH)
    logits_BxV = h_BxH @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"]
    logprobs_BxV = jax.nn.log_softmax(logits_BxV)
    loss = -logprobs_BxV[jnp.arange(n), Y_B].mean()
    return loss, locals()


loss, it = forward(params, Xb_BxT, Yb_B)

# The package's own model, in training mode (batch statistics), gives the same loss:
logits_pkg, _ = run.model.apply(run.variables, Xb_BxT, train=True, mutable=["batch_stats"])
loss_pkg = optax.softmax_cross_entropy_with_integer_labels(logits_pkg, Yb_B).mean()
print(f"loss by hand {float(loss):.6f}, package model {float(loss_pkg):.6f}")

# %% [markdown]
# ## The backward pass, by hand
#
# Cross-entropy, collapsed: d loss / d logits = (softmax(logits) - one_hot(y)) / n.
# BatchNorm (biased variance), collapsed: with x̂ the normalised input and g the gain,
#
# d x = g / (n σ) · (n · d y − Σ d y − x̂ · Σ (d y · x̂)),
#
# sums over the batch. The embedding's gradient scatters each window's rows back into C with
# `.at[X].add` (a row used twice gets both contributions).


# %%
def backward(p: dict, it: dict, X_BxT: jax.Array, Y_B: jax.Array) -> dict:
    n = X_BxT.shape[0]
    dlogits_BxV = (
        jax.nn.softmax(it["logits_BxV"]) - jax.nn.one_hot(Y_B, it["logits_BxV"].shape[1])
    ) / n
    dW2 = it["h_BxH"].T @ dlogits_BxV
    db2 = dlogits_BxV.sum(0)
    dh_BxH = dlogits_BxV @ p["Dense_1"]["kernel"].T
    dhpreact_BxH = (1.0 - it["h_BxH"] ** 2) * dh_BxH
    dgain = (it["bnraw_BxH"] * dhpreact_BxH).sum(0)
    dbias = dhpreact_BxH.sum(0)
    g_H, raw_BxH = p["BatchNorm_0"]["scale"], it["bnraw_BxH"]
    dhprebn_BxH = (
        g_H
        * it["bnvar_inv_H"]
        / n
        * (n * dhpreact_BxH - dhpreact_BxH.sum(0) - raw_BxH * (dhpreact_BxH * raw_BxH).sum(0))
    )
    dW1 = it["embcat_BxD"].T @ dhprebn_BxH
    demb_BxTxE = (dhprebn_BxH @ p["Dense_0"]["kernel"].T).reshape(it["emb_BxTxE"].shape)
    dC = jnp.zeros_like(p["Embed_0"]["embedding"]).at[X_BxT].add(demb_BxTxE)
    return {
        "Embed_0": {"embedding": dC},
        "Dense_0": {"kernel": dW1},
        "BatchNorm_0": {"scale": dgain, "bias": dbias},
        "Dense_1": {"kernel": dW2, "bias": db2},
    }


manual = backward(params, it, Xb_BxT, Yb_B)

# %% [markdown]
# ## The check, against `jax.grad` of the package's model
#
# The reference is the gradient of the package's Flax module itself (training mode), not of
# the hand-written forward above, so the check covers both.


# %%
def package_loss(p: dict) -> jax.Array:
    logits, _ = run.model.apply(
        {**run.variables, "params": p}, Xb_BxT, train=True, mutable=["batch_stats"]
    )
    return optax.softmax_cross_entropy_with_integer_labels(logits, Yb_B).mean()


auto = jax.grad(package_loss)(params)
print(
    f"{'gradient':24s} {'shape':>10s} {'exact':>6s} {'approx':>7s} {'max |diff|':>11s} {'max |grad|':>11s}"
)
for path, g_manual in jax.tree_util.tree_leaves_with_path(manual):
    name = "/".join(k.key for k in path)
    g_auto = auto[path[0].key][path[1].key]
    diff = float(jnp.abs(g_manual - g_auto).max())
    exact = bool(jnp.array_equal(g_manual, g_auto))
    approx = bool(jnp.allclose(g_manual, g_auto, rtol=1e-4, atol=1e-6))
    print(
        f"{name:24s} {str(g_manual.shape):>10s} {exact!s:>6s} {approx!s:>7s} {diff:11.2e} "
        f"{float(jnp.abs(g_auto).max()):11.2e}"
    )
    assert approx, name

# %% [markdown]
# "approx" rather than "exact": the two compute the same sums in a different order in float32,
# so they differ in the last bits.
#
# ## `mlp_manual`: training on the hand-written gradients
#
# The `mlp_manual` config is `mlp` with its train step taking the loss and gradients from the
# package's hand-written backward instead of `jax.grad`: same init, batches and SGD schedule.
# Both for 10,000 steps:

# %%
run_manual = jm.train(
    jm.get_config("mlp_manual", num_steps=STEPS),
    workdir="runs/04_mlp_manual",
    overwrite=True,
    progress=False,
)
for name, r in [("mlp (jax.grad)", run), ("mlp_manual (by hand)", run_manual)]:
    print(
        f"{name:22s}",
        {k: round(v, 5) for k, v in r.losses().items()},
    )
gap = max(abs(run.losses()[s] - run_manual.losses()[s]) for s in ("train", "val", "test"))
print(f"largest difference of the split losses: {gap:.1e}")


def curve(r: jm.Run) -> tuple[list[int], list[float]]:
    with open(r.workdir / "metrics.jsonl", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if '"loss"' in line]
    rows = [row for row in rows if "loss" in row and isinstance(row["loss"], float)]
    return [row["step"] for row in rows], [row["loss"] for row in rows]


fig, ax = plt.subplots(figsize=(7, 3.5))
for name, r, ls in [("mlp (jax.grad)", run, "-"), ("mlp_manual", run_manual, "--")]:
    ax.plot(*curve(r), ls, label=name)
ax.set_xlabel("step")
ax.set_ylabel("training loss (chunk mean)")
ax.legend()
plt.show()
print("samples, mlp:       ", run.sample(6, seed=0))
print("samples, mlp_manual:", run_manual.sample(6, seed=0))

# %% [markdown]
# The two runs agree to float32 rounding at every step, so they sample nearly the same names;
# [docs/backprop.md](../docs/backprop.md) writes out every step of the chain and its
# derivative.
